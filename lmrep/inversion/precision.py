"""The exact method on observed outputs: the tolerance their precision allows, and what the certificate then says.

States observed in bfloat16 or float16 (captured and stored that way, or float32 values that went through such a
cast) cannot match a float32 recomputation to float32 rounding. Each stored value is the true one rounded to
nearest, off by at most half a unit in the last place of the observed dtype; in the search's residual
``max_i |out_i - h_i| / max_i |h_i|`` that is at most ``ulp(max_i |h_i|) / 2 / max_i |h_i|`` at position t, between
eps/4 and eps/2 of the observed dtype depending on where the position's magnitude falls in its binade. The tolerance
at t is that plus the computation's own (``relative_tolerance``: eps of the model's dtype, sqrt(d), stages).

A larger tolerance can admit more than one token: the certificate then says so per position (``unique: false``,
the tokens inside the tolerance in ``ties``) instead of guessing, and gives the margin to the runner-up in units of
the tolerance. States of a model that itself ran in bf16 carry rounding from every operation, which no such bound
covers: give ``--tolerance`` for them.
"""
from __future__ import annotations

import torch

from ..errors import LmrepError
from ..layers import LayerModel
from .base import Target, recovered
from .config import InvertConfig
from .exact import invert_outputs, relative_tolerance
from .registry import register_method

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


def tolerances(target: LayerModel, h: torch.Tensor, cfg: InvertConfig) -> tuple[torch.Tensor, dict]:
    """Per-position tolerance (T,) for observed outputs ``h`` (T, D), and what it was derived from."""
    compute = relative_tolerance(target)
    if cfg.tolerance is not None:
        return torch.full((len(h),), float(cfg.tolerance), dtype=torch.float64), dict(tolerance_from="--tolerance")
    observed = observed_dtype(h)
    model_eps = torch.finfo(target.lm.dtype).eps
    name = str(observed).replace("torch.", "")
    if torch.finfo(observed).eps <= model_eps:
        tol = torch.full((len(h),), compute, dtype=torch.float64)
        return tol, dict(observed_dtype=name, tolerance_from=f"{name} states: the computation's rounding")
    tol = compute + storage_tolerance(h, observed)
    return tol, dict(observed_dtype=name, tolerance_from=f"{name} states: half an ulp of each position's "
                                                         "magnitude + the computation's rounding")


def annotate(cert: list[dict], tol: torch.Tensor) -> list[dict]:
    """Each position's tolerance, margin (runner-up residual / tolerance) and whether the token is unique: verified,
    with a runner-up outside the tolerance and no token tied with it."""
    for c, t in zip(cert, tol.tolist()):
        runner = c.get("runner_up_residual")
        c.update(tolerance=t, margin=None if runner is None else runner / t,
                 unique=bool(c["verified"] and not c["ties"] and runner is not None and runner > t))
    return cert


@register_method("exact")
def invert_exact(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
                 truth: list[list[int]] | None = None):
    """Each observed output searched with the tolerance its precision allows; the truth is not used."""
    if not isinstance(target, LayerModel):
        raise LmrepError("the exact method needs a layer of a causal language model (lmrep.layer_model)")
    for h in outputs:
        tol, why = tolerances(target, h, cfg)
        res = invert_outputs(target, h, cfg, progress, tolerance=tol)
        cert = annotate(res.pop("certificate"), tol)
        res.update(tolerance=float(tol.max()), **why, uniquely_verified=sum(c["unique"] for c in cert) / len(cert),
                   ties_found=sum(not c["unique"] and c["verified"] for c in cert), certificate=cert)
        yield recovered(target, cfg, res.pop("recovered_ids"), **res)
