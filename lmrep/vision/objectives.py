"""Objectives for feature visualisation: scalars to maximise, one per image, read from token activations.

An objective maps ``acts`` (a dict from layer name to that layer's output, (B, T, D)) to a value per image (B,).
Objectives compose like lucent's: ``neuron("4", 7) + 0.5 * patch("8", 0)``, ``-neuron("2", 1)``, and carry a
name that says what they are. Unlike lucent's conv objectives ([B, C, H, W]), these index tokens (patches).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import LmrepError

Acts = dict[str, torch.Tensor]


class Objective:
    """A value per image to maximise: ``objective(acts) -> (B,)``; ``.layers`` lists the layer names it reads."""

    def __init__(self, fn: Callable[[Acts], torch.Tensor], name: str, layers: tuple[str, ...]):
        self.fn, self.name, self.layers = fn, name, tuple(dict.fromkeys(layers))

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective | float") -> "Objective":
        if not isinstance(other, Objective):
            return Objective(lambda a: self(a) + other, f"{self.name} + {other:g}", self.layers)
        return Objective(lambda a: self(a) + other(a), f"{self.name} + {other.name}", self.layers + other.layers)

    __radd__ = __add__  # so sum([...]) works, starting from 0

    def __neg__(self) -> "Objective":
        return Objective(lambda a: -self(a), f"-({self.name})", self.layers)

    def __sub__(self, other: "Objective | float") -> "Objective":
        return self + (-other)

    def __mul__(self, k: float) -> "Objective":
        if isinstance(k, Objective):
            raise TypeError("objectives scale by numbers; multiplying two objectives is not defined")
        return Objective(lambda a: k * self(a), f"{k:g} * ({self.name})", self.layers)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"


def _check_range(what: str, i: int, n: int) -> None:
    if not 0 <= i < n:
        raise LmrepError(f"{what} {i} is out of range: this layer has {n}, so use 0..{n - 1}")


def neuron(layer: str, n: int) -> Objective:
    """One neuron (feature dimension ``n``) of ``layer``, averaged over all patches: the page's first grid."""
    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]  # (B, T, D)
        _check_range("neuron", n, a.shape[-1])
        return a[:, :, n].mean(dim=1)
    return Objective(fn, f"{layer}:neuron{n}", (layer,))


def patch(layer: str, p: int) -> Objective:
    """All neurons of one patch (token ``p``) of ``layer``, averaged: the page's third grid."""
    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]  # (B, T, D)
        _check_range("patch", p, a.shape[1])
        return a[:, p, :].mean(dim=-1)
    return Objective(fn, f"{layer}:patch{p}", (layer,))


def neuron_at(layer: str, n: int, p: int) -> Objective:
    """One neuron at one patch."""
    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]  # (B, T, D)
        _check_range("patch", p, a.shape[1])
        _check_range("neuron", n, a.shape[-1])
        return a[:, p, n]
    return Objective(fn, f"{layer}:neuron{n}@patch{p}", (layer,))


OBJECTIVES = {"neuron": neuron, "patch": patch}
