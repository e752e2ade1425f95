"""What captured states are stored as, by name: the floating-point types, and the quantised formats with what one
scale covers (degrade.py: what each does to a value). Torch-free, so that `lmrep capture` offers and checks them
before torch loads."""
from __future__ import annotations

STORED = ("float32", "float16", "bfloat16")  # the floating-point types states are stored in (torch's names)
INTS = {"int8": 8, "int4": 4, "int2": 2}  # the integer formats -> bits per value
FP8 = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}  # the fp8 formats -> torch's name of each
QUANTS = (*INTS, *FP8)
GROUPS = ("tensor", "channel", "token")  # what one scale covers, besides a group of G channels
GROUPS_HELP = "tensor, channel, token, or a group size G (G consecutive channels of a position share a scale)"


def code_range(kind: str, zero: bool) -> tuple[int, int]:
    """The codes an integer format stores: symmetric ones in [-qmax, qmax] (qmax = 2^(bits-1) - 1; -2^(bits-1) is
    read too, for quantisers that use it), ones with a zero point in [0, 2^bits - 1]."""
    bits = INTS[kind]
    return (0, 2 ** bits - 1) if zero else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def group_problem(group: str) -> str | None:
    """What is wrong with ``group`` as what one quantisation scale covers, or None."""
    if group in GROUPS or (group.isdigit() and int(group) > 0):
        return None
    return GROUPS_HELP
