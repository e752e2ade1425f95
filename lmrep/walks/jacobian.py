"""The Jacobian walk: move along the input directions that the layer's Jacobian J = dO/de shrinks the most.

The page's tangent walk is orthogonal only to the gradient of sum(O), one row combination of J; a direction
that leaves O(e) unchanged to first order must satisfy J v = 0 for all of J. Here J is never formed: products
J v (forward mode, torch.func.jvp) and J^T u (reverse mode, torch.func.vjp) give J^T J on a block of vectors, a
block Krylov space of ``krylov`` blocks is built on it, and Rayleigh-Ritz picks the ``directions`` vectors of
least ||J v|| in that space. Each move steps along them, then ``reproject`` pulls the output back.

Attention runs on PyTorch's math kernel here, since the fused kernels have no forward-mode derivative.
"""
from __future__ import annotations

import torch
from torch.func import jvp, vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

from .core import WalkState
from .registry import register_move


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


class JacobianProducts:
    """J^T J v for a batch of walks at fixed embeddings e (B, T, d), on blocks of k vectors per walk.

    Each walk is repeated k times along the batch, so one jvp and one vjp serve all k vectors of all walks.
    """

    def __init__(self, state: WalkState, e: torch.Tensor, k: int):
        self.k, self.shape = k, e.shape
        self.mask = state.mask.repeat_interleave(k, 0)  # (B*k, T)
        self.inmask = state.tokmask.repeat_interleave(k, 0)  # (B*k, T, 1)
        self.E = e.detach().repeat_interleave(k, 0)  # (B*k, T, d)
        self.f = lambda x: state.target(x, self.mask)
        with sdpa_kernel(SDPBackend.MATH):
            self.out, self._pull = vjp(self.f, self.E)  # out: (B*k, T, D) = O(e), repeated
        out = self.out
        self.outmask = self.mask.to(out.dtype).reshape(*self.mask.shape, *([1] * (out.dim() - 2)))

    def J(self, V: torch.Tensor) -> torch.Tensor:
        """V (B, n, k) -> J V as (B*k, T, D)."""
        B, T, d = self.shape
        tangents = V.transpose(1, 2).reshape(B * self.k, T, d) * self.inmask
        with sdpa_kernel(SDPBackend.MATH):
            return jvp(self.f, (self.E,), (tangents,))[1] * self.outmask

    def Jt(self, U: torch.Tensor) -> torch.Tensor:
        """U (B*k, T, D) -> J^T U (B*k, T, d), zero on padding."""
        with sdpa_kernel(SDPBackend.MATH):
            (back,) = self._pull(U * self.outmask)
        return back * self.inmask

    def JtJ(self, V: torch.Tensor) -> torch.Tensor:
        """V (B, n, k) -> J^T J V (B, n, k), n = T * d."""
        return self.Jt(self.J(V)).reshape(self.shape[0], self.k, -1).transpose(1, 2)


def _orthonormal(W: torch.Tensor) -> torch.Tensor:
    """(B, n, k) -> orthonormal columns spanning the same space, per walk."""
    return torch.linalg.qr(W, mode="reduced").Q


def least_directions(state: WalkState, e: torch.Tensor, k: int, blocks: int, start: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Directions of least output change at e, per walk, by block Krylov + Rayleigh-Ritz on J^T J.

    ``start`` (B, n, k): the starting block, e.g. the previous move's directions, so that the estimate keeps
    improving along the walk (a restarted block Lanczos); None: a random block from each walk's generator.
    Returns V (B, n, k) with orthonormal columns (zero on padding), their gains ||J v|| (B, k), ascending,
    and, for a random start, the gains of that random block (B, k): the baseline a random direction gets.
    """
    B, T, d = e.shape
    ops = JacobianProducts(state, e, k)
    inmask = state.tokmask.expand(B, T, d).reshape(B, T * d, 1)  # (B, n, 1)
    if start is None:
        start = state.draw(torch.randn, k).reshape(B, T * d, k)
        random_start = True
    else:
        random_start = False
    basis = [_orthonormal(start * inmask)]  # [(B, n, k)]
    images = []
    for j in range(blocks):
        images.append(ops.JtJ(basis[-1]))  # (B, n, k)
        if j == blocks - 1:
            break
        Q = torch.cat(basis, dim=2)  # (B, n, m)
        W = images[-1]
        for _ in range(2):  # twice is enough for orthogonality to working precision
            W = W - Q @ (Q.transpose(1, 2) @ W)
        basis.append(_orthonormal(W * inmask))
    Q, AQ = torch.cat(basis, dim=2), torch.cat(images, dim=2)  # (B, n, m)
    H = Q.transpose(1, 2) @ AQ  # (B, m, m) = Q^T J^T J Q
    evals, evecs = torch.linalg.eigh((H + H.transpose(1, 2)) / 2)  # ascending
    V = _orthonormal(Q @ evecs[..., :k])  # re-orthonormalised against round-off
    random_gain = None
    if random_start:
        random_gain = torch.diagonal(basis[0].transpose(1, 2) @ images[0], dim1=1, dim2=2).clamp_min(0).sqrt()
    return V, evals[:, :k].clamp_min(0).sqrt(), random_gain


def reproject(state: WalkState, steps: int) -> list[dict]:
    """Pull O(e) back toward O(e0): ``steps`` steepest-descent steps on 1/2 ||O(e) - O(e0)||_2^2, each with the
    step length that is exact for the linearised output (alpha = ||g||^2 / ||J g||^2, g = J^T (O(e) - O(e0))),
    so no learning rate needs tuning. Updates state.e; returns the output L2 distance before and after."""
    B = state.e.shape[0]
    e = state.e.detach()
    before = after = None
    for s in range(steps):
        ops = JacobianProducts(state, e, 1)
        residual = (ops.out.detach() - state.out0) * ops.outmask  # (B, T, D)
        if s == 0:
            before = _flat(residual).norm(dim=1)
        g = ops.Jt(residual)  # (B, T, d) = J^T r
        Jg = ops.J(_flat(g)[..., None])  # (B, T, D)
        alpha = _flat(g).pow(2).sum(1) / _flat(Jg).pow(2).sum(1).clamp_min(1e-30)  # (B,)
        e = (e - alpha[:, None, None] * g).detach()
    if steps:
        with torch.no_grad():
            after = _flat((state.output(e) - state.out0) * ops.outmask).norm(dim=1)
    state.e = e
    return [dict(reproject_before_l2=None if before is None else before[b].item(),
                 reproject_after_l2=None if after is None else after[b].item()) for b in range(B)]


@register_move("jacobian")
def jacobian_move(state: WalkState, n: int) -> list[dict]:
    """One move: find the least-gain directions at e (starting from the last move's), step step_size * sqrt(T)
    along the unit vector in their span closest to the previous move (at the first move: the least-gain direction
    with a random sign), then re-project."""
    cfg, e = state.cfg, state.e
    B, T, d = e.shape
    V, gains, random_gain = least_directions(state, e, cfg.directions, cfg.krylov, state.ritz)  # (B, n, k)
    state.ritz = V
    u = V[..., 0]  # (B, n) least gain
    if state.prev is None:
        signs = torch.stack([torch.randint(2, (1,), generator=g, device=g.device) for g in state.gens])
        u = u * (2.0 * signs - 1).to(u.dtype)
    else:
        c = (V.transpose(1, 2) @ _flat(state.prev)[..., None])[..., 0]  # (B, k) coordinates of prev
        keep = c.norm(dim=1) > 0.1  # prev has a real component in the span: continue along it
        proj = (V @ c[..., None])[..., 0]
        proj = proj / proj.norm(dim=1, keepdim=True).clamp_min(1e-30)
        flip = torch.sign((u * _flat(state.prev)).sum(1, keepdim=True)).clamp_min(0) * 2 - 1
        u = torch.where(keep[:, None], proj, u * flip)
    chosen = u  # (B, n) unit
    lengths = state.mask.sum(1).to(e.dtype)  # (B,)
    step = (chosen * (cfg.step_size * lengths.sqrt())[:, None]).reshape(B, T, d)
    state.prev = chosen.reshape(B, T, d)
    state.e = e + step * state.tokmask
    coords = (V.transpose(1, 2) @ chosen[..., None])[..., 0]  # (B, k): Ritz vectors diagonalise J^T J
    chosen_gain = ((coords ** 2) * gains ** 2).sum(1).sqrt()
    diags = [dict(gain_least=gains[b, 0].item(), gain_chosen=chosen_gain[b].item(),
                  gain_random=None if random_gain is None else random_gain[b].mean().item()) for b in range(B)]
    if cfg.inner:
        for d_, extra in zip(diags, reproject(state, cfg.inner)):
            d_.update(extra)
    return diags
