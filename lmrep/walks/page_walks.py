"""The page's two walks as moves: the tangent walk and the clamped walk.

Both work on a padded batch of walks at once; every random draw comes from the walk's own generator and every
update is zero on padding, so a walk gives the same path alone or in any batch.
"""
from __future__ import annotations

import torch

from ..objective.losses import distance
from .core import WalkState
from .registry import register_move
from .jacobian import reproject


def output_gradient(state: WalkState, e: torch.Tensor, value: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient w.r.t. e (B, T, d) of, per walk, ``sum``: the sum of O(e) (the page's layer_gradient) or
    ``l1``: ||O(e) - O(e0)||_1 (the page's target_gradient). Returns (gradient (B, T, d), value (B,))."""
    x = e.detach().requires_grad_(True)
    with torch.enable_grad():
        out = state.output(x)  # (B, T, D)
        if value == "sum":
            m = state.mask.to(out.dtype).reshape(*state.mask.shape, *([1] * (out.dim() - 2)))
            v = (out * m).flatten(1).sum(1)
        else:
            v = distance(out, state.out0, state.mask, "l1")
        (grad,) = torch.autograd.grad(v.sum(), x)  # walks do not interact, so one sum gives each its own
    return grad * state.tokmask, v.detach()


@register_move("tangent")
def tangent_move(state: WalkState, n: int) -> list[dict]:
    """The page's tangent walk: e += step_size * Vh[-1], where Vh comes from the full SVD of the gradient of
    sum(O) (T x d) and row -1 lies beyond the first T rows, so it is orthogonal to every token's gradient.
    Records the page's check ``gradient @ perp`` (max |.| over tokens, raw and relative to the gradient's norm) and
    perp's largest entry (near 1: the null-space vector the SVD returns is close to one coordinate axis)."""
    g, _ = output_gradient(state, state.e, "sum")  # (B, T, d)
    step = torch.zeros_like(state.e)
    diags = []
    for b, L in enumerate(state.mask.sum(1).tolist()):
        G = g[b, :L]  # (L, d)
        perp = torch.linalg.svd(G, full_matrices=True).Vh[-1]  # (d,) unit, beyond index L
        check = G @ perp  # (L,) the page's orthogonality check
        rel = (check.abs() / G.norm(dim=1).clamp_min(1e-30)).max().item()
        step[b, :L] = state.cfg.step_size * perp  # broadcast over the tokens, as the page does
        diags.append(dict(orthogonality=check.abs().max().item(), orthogonality_relative=rel,
                          check=[round(v, 10) for v in check.tolist()],
                          perp_max_entry=perp.abs().max().item()))  # ~1: LAPACK's null vector is nearly an axis
    state.e = state.e + step
    if state.cfg.inner:
        for d, extra in zip(diags, reproject(state, state.cfg.inner)):
            d.update(extra)
    return diags


def split_masks(state: WalkState) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """A random split index i per walk (0 <= i < d, as torch.randint(d)) -> (noised, free) boolean masks
    (B, 1, d) and the indices. text: noise on dims < i, descent on dims >= i (the page's equation);
    scripts: noise on dims >= i, descent on dims < i (the author's code)."""
    d = state.e.shape[-1]
    idx = [int(torch.randint(d, (1,), generator=g, device=g.device)) for g in state.gens]
    dims = torch.arange(d, device=state.e.device)
    below = torch.stack([dims < i for i in idx])[:, None, :]  # (B, 1, d)
    noised = below if state.cfg.convention == "text" else ~below
    return noised, ~noised, idx


def clamp_noise(state: WalkState) -> torch.Tensor:
    """Noise for one round, (B, T, d): N(0, noise) under the text convention, U(0, noise) under the scripts'."""
    return state.cfg.noise * state.draw(torch.randn if state.cfg.convention == "text" else torch.rand)


@register_move("clamped")
def clamped_round(state: WalkState, n: int) -> list[dict]:
    """One round of the clamped walk: noise on the clamped side, then ``inner`` plain gradient steps (lr) on
    ||O(e_n) - O(e)||_1 on the free side. The clamped side's update is multiplied by a zero mask, so it moves
    by the noise alone, never by gradient."""
    noised, free, idx = split_masks(state)
    tok = state.tokmask
    e = state.e + clamp_noise(state) * noised * tok
    loss = None
    for _ in range(state.cfg.inner):
        g, loss = output_gradient(state, e, "l1")
        e = e - state.cfg.lr * g * free * tok
    state.e = e.detach()
    return [dict(split=i, loss=None if loss is None else loss[b].item()) for b, i in enumerate(idx)]
