"""What counts as a match, and what the search says about each position it matched (or could not).

Tolerance, per position t: ``residual = max_i |out_i - target_i| / max_i |target_i|`` must not exceed
``eps(dtype) * sqrt(d_model) * stages`` (stages = blocks run + 1, + 1 more for an LM head): rounding error of
d-term sums grows like sqrt(d) per stage. The scale is the target's own magnitude at t, not the tensor's.

The certificate, per position: the accepted token's residual, the runner-up (best other verified token) and its
residual, tokens tied with the accepted one (identical embedding rows: no layer can tell them apart), and the
number of candidates verified. A position where no candidate is within tolerance says ``verified: false`` and
lists the closest candidates. ``certify`` then annotates every position and computes the record's verdict, once.

Observed outputs: states observed in bfloat16 or float16 (captured and stored that way, or float32 values that
went through such a cast) cannot match a float32 recomputation to float32 rounding. Each stored value is the true
one rounded to nearest, off by at most half a unit in the last place of the observed dtype; in the search's residual
``max_i |out_i - h_i| / max_i |h_i|`` that is at most ``ulp(max_i |h_i|) / 2 / max_i |h_i|`` at position t, between
eps/4 and eps/2 of the observed dtype depending on where the position's magnitude falls in its binade. The tolerance
at t is that plus the computation's own (``relative_tolerance``: eps of the model's dtype, sqrt(d), stages).

A larger tolerance can admit more than one token: the certificate then says so per position (``unique: false``,
the tokens inside the tolerance in ``ties``) instead of guessing, and gives the margin to the runner-up in units of
the tolerance. Where one channel is massive, the largest value's rounding is far more than the other channels',
and a wrong token can pass the scalar tolerance before the true one is tried: every accepted token of coarse states
is therefore checked once more against each stored value's own rounding interval (``elementwise_excess``, one
forward pass), and a position that fails it is not certified.
States of a model that itself ran in bf16 carry rounding from every operation, which no such bound covers: give
``--tolerance`` for them.
"""
from __future__ import annotations

import math

import torch

from ...models.layers import LayerModel

CLOSEST = 5  # candidates listed for a position that nothing matched
COARSE = (torch.bfloat16, torch.float16)  # dtypes that float32 states may have passed through


def observed_dtype(h: torch.Tensor) -> torch.dtype:
    """The precision the values of ``h`` actually carry: its dtype, or for a wider tensor the coarsest of
    bfloat16 and float16 in which every value is exact (float32 states that went through a cast)."""
    if h.dtype in COARSE:
        return h.dtype
    exact = [dt for dt in COARSE if torch.equal(h.to(dt).to(h.dtype), h)]
    return max(exact, key=lambda dt: torch.finfo(dt).eps) if exact else h.dtype


def storage_tolerance(h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half a unit in the last place of each position's largest magnitude in ``dtype``, relative to it: (T,)."""
    scale = h.detach().double().abs().amax(-1).clamp_min(torch.finfo(dtype).tiny)  # (T,)
    _, exponent = torch.frexp(scale)  # scale = m * 2^e, m in [0.5, 1): its binade starts at 2^(e - 1)
    ulp = torch.ldexp(torch.ones_like(scale), exponent - 1) * torch.finfo(dtype).eps
    return ulp / 2 / scale


def tolerances(target: LayerModel, h: torch.Tensor, cfg
               ) -> tuple[torch.Tensor, dict, torch.dtype | None]:
    """Per-position tolerance (T,) for observed outputs ``h`` (T, D), what it was derived from, and the observed
    dtype when it is coarser than the model's (its tokens then get the per-value check), else None. The one place
    the tolerance is resolved: ``cfg.tolerance`` (an ExactConfig's) if given, else from the model and ``h``."""
    compute = relative_tolerance(target)
    if cfg.tolerance is not None:
        return (torch.full((len(h),), float(cfg.tolerance), dtype=torch.float64),
                dict(tolerance_from="--tolerance"), None)
    observed = observed_dtype(h)
    name = str(observed).replace("torch.", "")
    if torch.finfo(observed).eps <= torch.finfo(target.lm.dtype).eps:
        tol = torch.full((len(h),), compute, dtype=torch.float64)
        return tol, dict(observed_dtype=name, tolerance_from=f"{name} states: the computation's rounding"), None
    tol = compute + storage_tolerance(h, observed)
    return tol, dict(observed_dtype=name, tolerance_from=f"{name} states: half an ulp of each position's "
                                                         "magnitude + the computation's rounding"), observed


@torch.no_grad()
def elementwise_excess(target: LayerModel, h: torch.Tensor, ids: list[int], dtype: torch.dtype) -> torch.Tensor:
    """Per position (T,): how far the recovered tokens' output lies outside each stored value's own rounding
    interval (half an ulp of that value in ``dtype``), relative to the position's largest magnitude. The scalar
    tolerance must allow the rounding of the largest value everywhere; where one channel is massive, that is far
    more than the other channels' own rounding, and a wrong token can pass it. This finer test cannot be passed
    that way: the true tokens' excess is only the computation's rounding."""
    lm = target.lm
    out = target(lm.embed(torch.tensor([ids], device=lm.device)))[0].double()  # (T, D)
    hd = h.detach().to(device=lm.device).double()
    _, exponent = torch.frexp(hd.abs().clamp_min(torch.finfo(dtype).tiny))
    half_ulp = torch.ldexp(torch.ones_like(hd), exponent - 1) * torch.finfo(dtype).eps / 2  # (T, D)
    excess = ((out - hd).abs() - half_ulp).clamp_min(0).amax(-1)  # (T,)
    return excess / hd.abs().amax(-1).clamp_min(torch.finfo(dtype).tiny)


def annotate(cert: list[dict], tol: torch.Tensor, excess: torch.Tensor | None = None,
             compute: float = 0.0) -> list[dict]:
    """Each position's tolerance, margin (runner-up residual / tolerance) and whether the token is unique: verified,
    with a runner-up outside the tolerance and no token tied with it. With ``excess`` (coarse states), a position
    whose token fails the per-value rounding test (excess above the computation's tolerance) is not verified."""
    for t, (c, tol_t) in enumerate(zip(cert, tol.tolist())):
        runner = c.get("runner_up_residual")
        if excess is not None:
            c["value_excess"] = float(excess[t])
            if c["verified"] and c["value_excess"] > compute:
                c.update(verified=False, why="inside the position's tolerance but outside the stored values' own "
                                             "rounding: another token may match; not certified")
        c.update(tolerance=tol_t, margin=None if runner is None else runner / tol_t,
                 unique=bool(c["verified"] and not c["ties"] and runner is not None and runner > tol_t))
    return cert


def relative_tolerance(target: LayerModel) -> float:
    """Largest residual (relative to the target's magnitude at the position) still counted as a match."""
    lm = target.lm
    stages = target.spec.depth + 1 + target.spec.has_lm_head
    return torch.finfo(lm.dtype).eps * math.sqrt(lm.d_model) * stages


def residuals(out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """out (B, D), target h (D,) -> max |out - h| / max |h|, (B,)."""
    scale = h.abs().amax().clamp_min(torch.finfo(h.dtype).tiny)
    return (out - h).abs().amax(-1) / scale


def entry(lm, t: int, token: int, ids: torch.Tensor, res: torch.Tensor, tol: float, groups: torch.Tensor,
          verified: bool) -> dict:
    """One position's certificate from every candidate verified there: ids (n,) and their residuals (n,)."""
    res_tok = float(res[ids == token].min())
    tied = torch.nonzero(groups == groups[token]).flatten()
    ties = sorted(({int(i) for i in tied} | {int(i) for i in ids[res <= tol]}) - {token})
    others = ~torch.isin(ids, tied)  # runner-up: the best verified token that is not a duplicate of the accepted
    out = dict(position=t, token=token, text=lm.decode([token]), verified=verified, residual=res_tok,
               ties=ties, candidates=len(ids))
    if others.any():
        j = int(res.masked_fill(~others, float("inf")).argmin())
        out.update(runner_up=int(ids[j]), runner_up_text=lm.decode([int(ids[j])]), runner_up_residual=float(res[j]))
    else:
        out.update(runner_up=None, runner_up_text=None, runner_up_residual=None)
    if not verified:
        best = res.argsort()[:CLOSEST]
        out["closest"] = [dict(token=int(ids[j]), text=lm.decode([int(ids[j])]), residual=float(res[j]))
                          for j in best]
    return out


def certify(cert: list[dict], tol: torch.Tensor, excess: torch.Tensor | None = None, compute: float = 0.0) -> dict:
    """The record's verdict from the positions' certificates, each annotated first (``annotate``): whether every
    position is verified, the share verified uniquely, ties, costs in candidates and the largest residual."""
    cert = annotate(cert, tol, excess, compute)
    counts = [c["candidates"] for c in cert]
    return dict(verified=all(c["verified"] for c in cert), candidates_per_token=sum(counts) / len(counts),
                candidates_max=max(counts), max_residual=max(c["residual"] for c in cert),
                tolerance=float(tol.max()), uniquely_verified=sum(c["unique"] for c in cert) / len(cert),
                ties_found=sum(not c["unique"] and c["verified"] for c in cert), certificate=cert)
