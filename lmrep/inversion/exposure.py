"""How a layer's states reach an attacker, and what the attacker knows: stored in float32 or bfloat16, quantised,
noised, or obfuscated (cloak.py), read by an attacker who knows the degradation's bound or not, or the
obfuscation's secret or not.

``observe`` makes the states the way a user's go: ``states.capture`` (the stored dtype and the noise),
``states.quantise`` (the quantiser's scales), the states file written and read back by ``states.load``, and returns
what the exact method is handed: a ``Degraded`` with the bound the attacker tests candidates against. Every
exposure is read that way, float states too (``degrade.stored``), so every position gets its ambiguity set.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LmrepError
from . import states
from .cloak import Cloak, block_of
from .degrade import Degraded, Quantisation, stored

ATTACKERS = {
    "aware": "knows the degradation and tests candidates against its bound",
    "unaware": "reads the states as exact float32 (does not know they were noised or obfuscated)",
    "guess": "knows the obfuscation but not its secret: removes it with a secret of its own",
    "secret": "knows the obfuscation and its secret: removes it (a sanity bound)",
}
FLOAT_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}


@dataclass(frozen=True)
class Exposure:
    """One way states reach an attacker."""

    name: str  # as reports show it: "fp32", "int4", "noise 0.1", "cloak, secret unknown", ...
    dtype: str = "float32"  # the float dtype the states are stored in (states.STORE_DTYPES)
    quant: str | None = None  # a quantisation (degrade.QUANTS), or None
    zero: bool = False  # the quantisation with a zero point per scale (min-max), not symmetric
    noise: float = 0.0  # Gaussian noise, times each position's RMS, added before storing
    cloak: bool = False  # obfuscated by a secret matrix per head (cloak.Cloak)
    attacker: str = "aware"  # one of ATTACKERS

    def __post_init__(self):
        if self.attacker not in ATTACKERS:
            raise LmrepError(f"unknown attacker '{self.attacker}': choose one of {', '.join(ATTACKERS)}")
        if self.attacker in ("guess", "secret") and not self.cloak:
            raise LmrepError(f"attacker '{self.attacker}' is about an obfuscation's secret: give cloak=True")
        if self.dtype not in states.STORE_DTYPES:
            raise LmrepError(f"unknown storage dtype '{self.dtype}': choose one of {', '.join(states.STORE_DTYPES)}")
        if self.quant or self.zero:
            Quantisation(self.quant, zero=self.zero)  # an unknown one is one line

    @property
    def bits(self) -> int:
        """Bits per stored value (scales not counted)."""
        if self.quant:
            return Quantisation(self.quant).bits
        return FLOAT_BITS[self.dtype]


def observe(target, ids: list[int], exposure: Exposure, group: str = "channel", secret: int = 0,
            seed: int = 0) -> Degraded:
    """What an attacker holds of ``target``'s output for ``ids`` under ``exposure``: captured, noised, obfuscated
    and quantised as stored, written to a states file and read back, then read the way the attacker would (its
    values and the bound it tests candidates against). ``group``: the quantisation's scale granularity;
    ``secret``: the obfuscation's; ``seed``: the noise's."""
    dtype = states.STORE_DTYPES[exposure.dtype]
    h = states.capture(target, [ids], dtype, exposure.noise, seed)[0]  # (T, D) as stored
    if exposure.cloak:
        h = Cloak(secret, block_of(target)).apply(h, target.name)
    quant = Quantisation(exposure.quant, group, exposure.zero) if exposure.quant else None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "states.safetensors"
        states.save(path, states.quantise([h], quant) if quant else [h], states.header(target, dtype, exposure.noise,
                                                                                       [ids], quant))
        held = states.load(path)
    return read_as(held, exposure, target, secret)


def read_as(held: states.States, exposure: Exposure, target, secret: int) -> Degraded:
    """The first tensor of a states file as the exposure's attacker reads it."""
    if exposure.attacker == "aware":
        obs = held.observed(0)
        return obs if isinstance(obs, Degraded) else stored(obs)
    h = held.tensors[0]
    if exposure.attacker == "unaware":
        return stored(h.float(), about="read as exact float32 states")
    guess = secret + 1 if exposure.attacker == "guess" else secret  # any other secret is as good a guess
    x, bound = Cloak(guess, block_of(target)).remove(h, target.name)
    return Degraded(x, bound=bound,
                    about=f"obfuscation removed with {'a guessed' if guess != secret else 'the'} secret")
