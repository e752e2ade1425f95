"""Small stand-in models from the seed, as plain modules over token embeddings (B, T, d).

    MLPMimic      the transformer block's MLP alone, per token: d -> 4d -> d with GELU (no residual, no norm)
    FCNet         the seed's invertible net: flatten -> Linear(T*d, 4*T*d) -> GELU -> Linear(4*T*d, 4*T*d)
    FCNet(invertible=False)   the same with the last layer back to T*d, which the seed calls non-invertible

All take ``seed`` so their random weights are reproducible without touching the global random state, and are
returned frozen in eval mode, like the language models of ``lmrep.models``: they are things to invert, not to train.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import LmrepError


def _seeded_init(module: nn.Module, seed: int | None) -> None:
    """Re-run each layer's default initialisation under ``seed``, leaving the global random state as it was."""
    if seed is None:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()


def _freeze(module: nn.Module) -> None:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def _check(name: str, value: int) -> int:
    if int(value) < 1:
        raise LmrepError(f"{name} must be 1 or more, got {value}")
    return int(value)


class MLPMimic(nn.Module):
    """(B, T, d) -> (B, T, d): Linear(d, 4d), GELU, Linear(4d, d), applied to each token on its own."""

    def __init__(self, d_model: int = 768, expansion: int = 4, seed: int | None = 0):
        super().__init__()
        d = _check("d_model", d_model)
        self.d_model = d
        self.up = nn.Linear(d, _check("expansion", expansion) * d)
        self.act = nn.GELU()
        self.down = nn.Linear(expansion * d, d)
        _seeded_init(self, seed)
        _freeze(self)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(embeds)))  # (B, T, d) -> (B, T, 4d) -> (B, T, d)


class FCNet(nn.Module):
    """(B, T, d) -> (B, 4*T*d), or (B, T*d) with ``invertible=False``: the seed's fully connected net.

    The whole input is flattened, so the net is tied to one input length ``tokens``.
    """

    def __init__(self, tokens: int = 5, d_model: int = 768, invertible: bool = True, seed: int | None = 0):
        super().__init__()
        self.tokens, self.d_model = _check("tokens", tokens), _check("d_model", d_model)
        n = tokens * d_model
        self.invertible = invertible
        self.input = nn.Linear(n, 4 * n)
        self.act = nn.GELU()
        self.h2h = nn.Linear(4 * n, 4 * n if invertible else n)
        _seeded_init(self, seed)
        _freeze(self)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        B, T, d = embeds.shape
        if (T, d) != (self.tokens, self.d_model):
            raise LmrepError(f"FCNet was built for {self.tokens} tokens x {self.d_model} dims, got {T} x {d}: "
                             "build one for this input length")
        x = embeds.reshape(B, T * d)  # (B, T*d)
        return self.h2h(self.act(self.input(x)))  # (B, 4*T*d) or (B, T*d)
