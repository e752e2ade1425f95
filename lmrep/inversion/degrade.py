"""Degraded states: what a serving system stores or an API returns instead of the exact layer output, and the
bound each degradation puts on the difference, which the exact method's certificate tests candidates against.

Quantisation, as key/value-cache quantisers store it: int8, int4 and int2, symmetric (absmax scales, integers in
[-qmax, qmax], kept one per int8) or with a zero point per scale (min-max scales, codes in [0, 2^bits - 1], one per
uint8: x = (code - zero) x scale, as KIVI and quanto store caches), and fp8 e4m3 and e5m2 (the value over its scale,
rounded to the fp8 format). A scale covers the whole tensor (shape ()), a channel ((D,)), a position ((T, 1)) or a
group of G consecutive channels of a position ((T, D / G)); its shape says which. Dequantised, each value is off
from the true one by at most half a quantisation step: the scale / 2 for integers, half an fp8 ulp of the stored
value times the scale for fp8.

Noise: Gaussian with standard deviation ``noise`` times the position's root mean square (how ``capture`` adds it).
For the true input, ||out - observed||^2 / sigma^2 is chi-square with D degrees of freedom; a candidate fits when
it is below the (1 - ALPHA) quantile, so the true token is rejected with probability ALPHA at most per position.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import LmrepError
from .formats import FP8, GROUPS_HELP, INTS, QUANTS, code_range, group_problem

FP8_DTYPES = {kind: getattr(torch, name) for kind, name in FP8.items()}
ALPHA = 1e-6  # the chance that noise alone puts the true token outside its position's test


@dataclass(frozen=True)
class Quantisation:
    kind: str  # one of QUANTS
    group: str = "channel"  # "tensor", "channel", "token" or a group size as digits
    zero: bool = False  # integer formats only: min-max scales and a zero point each, codes in [0, 2^bits - 1]

    def __post_init__(self):
        if self.kind not in QUANTS:
            raise LmrepError(f"unknown quantisation '{self.kind}': choose one of {', '.join(QUANTS)}")
        if group_problem(self.group):
            raise LmrepError(f"unknown quantisation group '{self.group}': give {GROUPS_HELP}")
        if self.zero and self.kind not in INTS:
            raise LmrepError(f"{self.kind} has no zero point: give an integer format ({', '.join(INTS)}) for one")

    @property
    def bits(self) -> int:
        return INTS.get(self.kind, 8)

    def _over_groups(self, x: torch.Tensor, reduce) -> torch.Tensor:
        """``reduce`` (amax or amin) over each scale's share of x (T, D), in the scale's own shape."""
        if self.group == "tensor":
            return reduce(x)
        if self.group == "channel":
            return reduce(x, 0)  # (D,)
        if self.group == "token":
            return reduce(x, -1, keepdim=True)  # (T, 1)
        G = int(self.group)
        if x.shape[-1] % G:
            raise LmrepError(f"quantisation groups of {G} do not divide the width {x.shape[-1]}: pick a divisor")
        return reduce(x.unflatten(-1, (-1, G)), -1)  # (T, D / G)

    def quantise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x (T, D) -> stored values ((T, D): int8, uint8 with a zero point, or fp8), float32 scales and zero points
        (None without)."""
        x, tiny = x.float(), torch.finfo(torch.float32).tiny
        if self.zero:  # as KIVI and quanto store caches: the group's range in 2^bits - 1 steps from its minimum
            lo, hi = self._over_groups(x, torch.amin), self._over_groups(x, torch.amax)
            scale = ((hi - lo) / (2 ** self.bits - 1)).clamp_min(tiny)
            zero = -lo / scale
            q = (x / expand(scale, x.shape) + expand(zero, x.shape)).round().clamp(*code_range(self.kind, True))
            return q.to(torch.uint8), scale, zero
        top = code_range(self.kind, False)[1] if self.kind in INTS else torch.finfo(FP8_DTYPES[self.kind]).max
        scale = (self._over_groups(x.abs(), torch.amax) / top).clamp_min(tiny)
        y = x / expand(scale, x.shape)
        if self.kind in INTS:
            return y.round().clamp(-top, top).to(torch.int8), scale, None
        return y.to(FP8_DTYPES[self.kind]), scale, None


def expand(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A scale of any granularity broadcast to the values' shape (T, D)."""
    T, D = shape
    if scale.dim() == 2 and scale.shape[0] == T and scale.shape[1] not in (1, D):
        return scale.repeat_interleave(D // scale.shape[1], -1)
    return scale.expand(T, D) if scale.dim() < 2 or scale.shape == (T, 1) else scale


def check_scale(scale: torch.Tensor, shape: torch.Size, where: str) -> None:
    T, D = shape
    ok = (scale.numel() == 1 or tuple(scale.shape) in ((D,), (1, D), (T, 1))
          or (scale.dim() == 2 and scale.shape[0] == T and scale.shape[1] and D % scale.shape[1] == 0))
    if not ok:
        raise LmrepError(f"{where}: scale of shape {tuple(scale.shape)} fits no granularity of values {tuple(shape)}: "
                         "give () per tensor, (D,) per channel, (T, 1) per position or (T, D / G) per group")
    if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise LmrepError(f"{where}: scales must be positive and finite")


def dequantise(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, kind: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored values (T, D), their scales and zero points (None: symmetric) -> the values (T, D) float32 and each
    one's rounding bound (T, D)."""
    s = expand(scale.float(), q.shape)
    codes = q.float() if zero is None else q.float() - expand(zero.float(), q.shape)
    x = codes * s
    if kind in INTS:
        return x, s / 2
    return x, half_ulp(q.float(), FP8_DTYPES[kind]) * s


def half_ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half a unit in the last place of each value of ``x`` (already in ``dtype``'s grid) in that float format:
    the most rounding to nearest moved it (subnormals given the smallest normal binade's, a little more)."""
    _, e = torch.frexp(x.abs().clamp_min(torch.finfo(dtype).smallest_normal))  # |x| = m 2^e, m in [0.5, 1)
    return torch.ldexp(torch.ones_like(x), e - 1) * torch.finfo(dtype).eps / 2  # its binade starts at 2^(e-1)


def noise_sigma(h: torch.Tensor, noise: float) -> torch.Tensor:
    """(T,) standard deviation of noise added as ``noise`` times each position's RMS, from the noisy states: their
    mean square is the clean one's times (1 + noise^2)."""
    return noise * h.double().pow(2).mean(-1).sqrt() / math.sqrt(1 + noise ** 2)


def chi2_limit(D: int, alpha: float = ALPHA) -> float:
    """The (1 - alpha) quantile of chi-square with D degrees of freedom, over D."""
    from scipy.stats import chi2
    return float(chi2.ppf(1 - alpha, D)) / D


@dataclass
class Degraded:
    """Observed outputs (T, D) and what degraded them: each value's rounding bound (T, D) after quantisation, or
    the noise's standard deviation per position (T,). The exact method tests candidates against it and lists every
    token that fits; the other methods read the values alone."""
    values: torch.Tensor  # (T, D)
    bound: torch.Tensor | None = None  # (T, D): |observed - true| <= bound, value by value
    sigma: torch.Tensor | None = None  # (T,): observed = true + N(0, sigma^2) per value
    about: str = ""  # what degraded them, for the record (e.g. "int8, scale per channel")

    def match(self, compute: float):
        """(residual function ``(out (n, D), t) -> (n,)``, tolerance (T,)) of the test a candidate must pass."""
        h = self.values.double()
        T, D = h.shape
        if self.bound is not None:
            bound, scale = self.bound.double(), h.abs().amax(-1).clamp_min(torch.finfo(torch.float64).tiny)

            def excess(out: torch.Tensor, t: int) -> torch.Tensor:  # beyond each value's interval, relative
                return ((out.double() - h[t]).abs() - bound[t]).clamp_min(0).amax(-1) / scale[t]
            return excess, torch.full((T,), compute, dtype=torch.float64)
        var = self.sigma.double().pow(2).clamp_min(torch.finfo(torch.float64).tiny)

        def statistic(out: torch.Tensor, t: int) -> torch.Tensor:  # chi-square over D
            return (out.double() - h[t]).pow(2).mean(-1) / var[t]
        return statistic, torch.full((T,), chi2_limit(D), dtype=torch.float64)


def stored(h: torch.Tensor, about: str = "") -> Degraded:
    """Float states as stored (float32, bfloat16, float16), as a Degraded: each value is the true one rounded to
    nearest in its dtype, off by at most half a unit in its last place (zero for float32 and wider: there only the
    computation's own rounding, which every test allows, is left). Read this way, float states are verified
    against the whole vocabulary like quantised ones, so each position reports its ambiguity set."""
    x = h.detach().float()
    exact = torch.finfo(h.dtype).eps <= torch.finfo(torch.float32).eps
    bound = torch.zeros_like(x) if exact else half_ulp(x, h.dtype)
    return Degraded(x, bound=bound, about=about or f"{str(h.dtype).replace('torch.', '')} states")


def values(h) -> torch.Tensor:
    """The observed values of a tensor or a Degraded."""
    return h.values if isinstance(h, Degraded) else h
