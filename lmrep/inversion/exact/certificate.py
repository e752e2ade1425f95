"""What counts as a match, and what the search says about each position it matched (or could not).

Tolerance, per position t: ``residual = max_i |out_i - target_i| / max_i |target_i|`` must not exceed
``eps(dtype) * sqrt(d_model) * stages`` (stages = blocks run + 1, + 1 more for an LM head): rounding error of
d-term sums grows like sqrt(d) per stage. The scale is the target's own magnitude at t, not the tensor's.

The certificate, per position: the accepted token's residual, the runner-up (best other verified token) and its
residual, tokens tied with the accepted one (identical embedding rows: no layer can tell them apart), and the
number of candidates verified. A position where no candidate is within tolerance says ``verified: false`` and
lists the closest candidates.
"""
from __future__ import annotations

import math

import torch

from ...models.layers import LayerModel

CLOSEST = 5  # candidates listed for a position that nothing matched


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


def summary(cert: list[dict]) -> dict:
    """The record's headline fields from the positions' certificates."""
    counts = [c["candidates"] for c in cert]
    return dict(verified=all(c["verified"] for c in cert), candidates_per_token=sum(counts) / len(counts),
                candidates_max=max(counts), max_residual=max(c["residual"] for c in cert))
