"""What can be inverted or walked: a layer of a language model (``lmrep.models.layers``), or a small net from the page
over a model's token embeddings, wrapped so that both look alike.

A *target* is any callable ``O(embeds (B, T, d), attention_mask (B, T)) -> (B, T, D)`` with attributes ``lm``
(the LoadedModel whose embeddings, tokenizer and decoders are used) and ``name``; a LayerModel is one, and reports
its ``spec`` (depth, head). The page's small nets:

    MLPMimic      the transformer block's MLP alone, per token: d -> 4d -> d with GELU (no residual, no norm)
    FCNet         the page's invertible net: flatten -> Linear(T*d, 4*T*d) -> GELU -> Linear(4*T*d, 4*T*d)
    FCNet(invertible=False)   the same with the last layer back to T*d, which the page calls non-invertible

All take ``seed`` so their random weights are reproducible without touching the global random state, and are
returned frozen in eval mode, like the language models of ``lmrep.models.load``: they are things to invert, not to train.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LmrepError
from ..models.layers import layer_model
from ..models.load import LoadedModel

TOYS = ("fcnet", "fcnet-noninv", "mlp")


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
    """(B, T, d) -> (B, 4*T*d), or (B, T*d) with ``invertible=False``: the page's fully connected net.

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


class EmbeddingTarget(nn.Module):
    """Wraps a net over token embeddings into an inversion target: (B, T, d) -> (B, T, D).

    ``lm`` supplies the embedding matrix, the tokenizer and the decoders, as for a layer of the model itself.
    A flattened output (B, N) is viewed per position as (B, T, N / T); the mask is not used, so a net that mixes
    positions (FCNet) must be given batches of one length, which is how the experiments call it.
    """

    def __init__(self, net: nn.Module, lm: LoadedModel, name: str):
        super().__init__()
        self.net, self.lm, self.name = net, lm, name

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = embeds.shape
        return self.net(embeds).reshape(B, T, -1)  # (B, T, D)


def toy_target(toy: str, lm: LoadedModel, tokens: int = 0, seed: int = 0, name: str | None = None
               ) -> EmbeddingTarget:
    """A page net over ``lm``'s token embeddings: fcnet (invertible, built for ``tokens`` positions),
    fcnet-noninv, or mlp (the block's MLP, any length)."""
    if toy == "mlp":
        net = MLPMimic(lm.d_model, seed=seed)
    elif toy in ("fcnet", "fcnet-noninv"):
        net = FCNet(tokens, lm.d_model, invertible=toy == "fcnet", seed=seed)
    else:
        raise LmrepError(f"unknown toy net '{toy}': choose one of {', '.join(TOYS)}")
    return EmbeddingTarget(net.to(device=lm.device, dtype=lm.dtype), lm, name or toy)


def make_target(lm: LoadedModel, layer: int | str = 1, head: str = "none", toy: str | None = None, seed: int = 0):
    """What to invert or walk on: layer ``layer`` (+ ``head``) of ``lm``, or with ``toy="mlp"`` the page's MLP
    mimic (per token d -> 4d -> d, GELU, weights drawn under ``seed``) over lm's token embeddings."""
    if toy is None:
        return layer_model(lm, layer, head)
    if toy != "mlp":
        raise LmrepError(f"unknown toy model '{toy}': the walk supports mlp (the page's MLP mimic)")
    return toy_target("mlp", lm, seed=seed, name=f"mlp-mimic(d={lm.d_model})")


def depth_of(target) -> int | None:
    """Blocks run by a LayerModel target; None for targets that are not layers of a model."""
    spec = getattr(target, "spec", None)
    return spec.depth if spec is not None else None
