"""Quantised states in a states file: each tensor's stored values under its key, its float scales under
``<key>.scale`` and, if quantised with zero points, those under ``<key>.zero`` (lmrep.inversion.degrade: what each
format does to a value); ``quantise`` writes them, ``dequantised`` reads them back with each value's bound."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import LmrepError
from .degrade import FP8_DTYPES, Quantisation, check_scale, dequantise
from .formats import INTS, QUANTS, code_range

INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32)  # what integer codes may be stored in


def quantise(tensors: list[torch.Tensor], quant: Quantisation) -> dict[str, torch.Tensor]:
    """What a quantised states file holds: each tensor's stored values under its key, its scales under key.scale and
    its zero points (if it has them) under key.zero."""
    out = {}
    for i, t in enumerate(tensors):
        out[str(i)], out[f"{i}.scale"], zero = quant.quantise(t)
        if zero is not None:
            out[f"{i}.zero"] = zero
    return out


def dequantised(path: Path, tensors: dict[str, torch.Tensor], meta: dict):
    """Quantised values, their scales and zero points -> float32 values and each value's rounding bound (None if the
    file is not quantised); one line for a quantisation the reader does not know, or values that do not fit it."""
    extra = {s: {k[: -len(s)]: tensors[k] for k in tensors if k.endswith(s)} for s in (".scale", ".zero")}
    scales, zeros = extra[".scale"], extra[".zero"]
    quant = meta.get("quant")
    stored = [k for k in tensors if not k.endswith((".scale", ".zero"))]
    if quant is None and not scales and not zeros and all(tensors[k].is_floating_point() for k in stored):
        return tensors, None
    if quant not in QUANTS:
        raise LmrepError(f"states file '{path}' holds values that are not floating-point and its header's quant is "
                         f"{quant!r}: give floating-point states, or quantised ones with quant = one of "
                         f"{', '.join(QUANTS)} in the header and each tensor's scales under key.scale")
    values, bounds = {}, {}
    for k in stored:
        if k not in scales:
            raise LmrepError(f"states file '{path}': tensor '{k}' has no scales: store them under '{k}.scale'")
        where, zero = f"states file '{path}', tensor '{k}'", zeros.get(k)
        _check_codes(tensors[k], quant, zero is not None, where)
        check_scale(scales[k], tensors[k].shape, where)
        if zero is not None and (zero.shape != scales[k].shape or not bool(torch.isfinite(zero.float()).all())):
            raise LmrepError(f"{where}: zero points of shape {tuple(zero.shape)} do not match its scales' "
                             f"{tuple(scales[k].shape)}: give one finite zero point per scale under '{k}.zero'")
        values[k], bounds[k] = dequantise(tensors[k], scales[k], zero, quant)
    return values, bounds


def _check_codes(q: torch.Tensor, quant: str, zero: bool, where: str) -> None:
    """Stored values that fit ``quant``: (T, D), fp8 in its own dtype, integers of an integer dtype within the
    format's codes (with a zero point: from 0)."""
    kind = lambda t: str(t).replace("torch.", "")
    if quant not in INTS:
        if q.dtype != FP8_DTYPES[quant] or q.dim() != 2:
            raise LmrepError(f"{where} is {kind(q.dtype)} of shape {tuple(q.shape)}; {quant} states are (T, D) "
                             f"{kind(FP8_DTYPES[quant])}")
        return
    if q.dtype not in INT_DTYPES or q.dim() != 2:
        raise LmrepError(f"{where} is {kind(q.dtype)} of shape {tuple(q.shape)}; {quant} states are (T, D) int8 "
                         "(or uint8 with zero points)")
    if q.dtype == torch.uint8 and not zero:
        raise LmrepError(f"{where} holds unsigned codes without zero points: store one per scale under its key "
                         "+ '.zero' (value = (code - zero) x scale), or signed codes if they are symmetric")
    lo, hi = code_range(quant, zero)
    if q.numel() and (int(q.min()) < lo or int(q.max()) > hi):
        raise LmrepError(f"{where} holds codes from {int(q.min())} to {int(q.max())}, outside {quant}'s "
                         f"[{lo}, {hi}]{' (with zero points)' if zero else ''}: check the header's quant")
