"""A KV-Cloak-style obfuscation of stored states: each head's keys and values multiplied by a secret invertible
matrix before they are stored, so that what an observer of the cache holds is not the layer's output.

KV-Cloak ("Shadow in the Cache", Luo et al., 2025) multiplies the key/value cache by secret invertible matrices and
folds their inverses into the attention's weights, so the model computes the same outputs from the obfuscated
cache. Only the storage side matters to an observer, and only it is implemented here: ``Cloak.apply`` turns the
states into what is stored, ``Cloak.remove`` takes them back with the secret and says how far the round trip can
be off (the stored values' float rounding carried through the inverse matrix), so an attacker holding the secret
is tested against an honest bound.

The matrices: per block of ``block`` consecutive channels (a head of keys or of values; the whole width of a hidden
state), M = Q1 diag(s) Q2 with Q1, Q2 orthogonal (QR of Gaussian matrices) and s drawn in [1/sqrt(2), sqrt(2)], so
M's condition number is at most 2; drawn from a generator seeded by the secret and the layer's name, so every layer
and head has its own.

Why an attacker who knows the scheme but not the secret learns nothing certain from one short prompt: a block's
observed rows are K M, and for any other token sequence whose rows K* have full rank T <= block, some invertible
M* maps K* to the same observation. With at most ``block`` positions, every such sequence fits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..errors import LmrepError
from ..models.layers import cache_shape
from .base import output_width
from .degrade import half_ulp

SPREAD = 2 ** 0.5  # singular values in [1/SPREAD, SPREAD]: condition number at most SPREAD^2


@dataclass(frozen=True)
class Cloak:
    """A secret and the width of the blocks (heads) it obfuscates one by one."""

    secret: int
    block: int  # channels per matrix: a head's size for keys and values, the whole width for hidden states

    def matrices(self, layer: str, width: int) -> torch.Tensor:
        """The secret matrices of a layer's states of ``width`` channels: (width / block, block, block) float64."""
        if width % self.block:
            raise LmrepError(f"{layer}: the obfuscation's blocks of {self.block} do not divide the width {width}")
        seed = int.from_bytes(hashlib.sha256(f"{self.secret}|{layer}|{self.block}".encode()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        n, b = width // self.block, self.block
        q1 = torch.linalg.qr(torch.randn(n, b, b, generator=g, dtype=torch.float64))[0]
        q2 = torch.linalg.qr(torch.randn(n, b, b, generator=g, dtype=torch.float64))[0]
        s = SPREAD ** (2 * torch.rand(n, 1, b, generator=g, dtype=torch.float64) - 1)  # in [1/SPREAD, SPREAD]
        return (q1 * s) @ q2  # Q1 diag(s) Q2, (n, b, b)

    def apply(self, h: torch.Tensor, layer: str) -> torch.Tensor:
        """States (T, D) -> what is stored, (T, D) in h's dtype: each block's rows times its secret matrix."""
        M = self.matrices(layer, h.shape[-1])  # (n, b, b)
        x = h.detach().double().unflatten(-1, (len(M), self.block)).transpose(0, 1)  # (n, T, b)
        return (x @ M).transpose(0, 1).flatten(-2).to(h.dtype).contiguous()

    def remove(self, stored: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored states (T, D) -> the states (T, D) float32 and each value's bound (T, D): the stored values'
        rounding in their dtype (half an ulp) carried through the inverse matrix, plus the float32 cast's own."""
        M = self.matrices(layer, stored.shape[-1])
        inv = torch.linalg.inv(M)  # (n, b, b)
        y = stored.detach().double().unflatten(-1, (len(M), self.block)).transpose(0, 1)  # (n, T, b)
        err = half_ulp(stored.detach().float(), stored.dtype).double()
        err = err.unflatten(-1, (len(M), self.block)).transpose(0, 1)  # (n, T, b)
        x = (y @ inv).transpose(0, 1).flatten(-2)  # (T, D)
        spread = (err @ inv.abs()).transpose(0, 1).flatten(-2)  # (T, D): |delta y| @ |M^-1| bounds |delta x|
        out = x.float()
        return out, (spread + (out.double() - x).abs()).float() * (1 + 1e-6)


def block_of(target) -> int:
    """The obfuscation's block for a layer's states: a head's size for a layer of the key/value cache (keys and
    values each by head), the whole width for any other layer."""
    if getattr(target, "spec", None) is not None and target.spec.cached:
        return cache_shape(target.lm, target.spec.depth - 1)[1]
    return output_width(target)
