"""Values a user gives, checked in one place: config fields that carry their own help and check, so the library
and the CLI (which builds its flags from these fields) reject a bad value with the same one-line message.

A check takes a value and returns None when it is fine, or what the value must be ("1 or more", "a positive finite
number"); ``check_fields`` turns that into ``LmrepError("steps must be 1 or more, got 0")``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

from .errors import LmrepError

Check = Callable[[Any], "str | None"]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(lowest: int) -> Check:
    """A whole number >= lowest."""
    def check(v):
        ok = _is_number(v) and float(v).is_integer() and v >= lowest
        return None if ok else f"{lowest} or more"
    return check


def positive(v) -> str | None:
    """A finite number > 0."""
    return None if _is_number(v) and math.isfinite(v) and v > 0 else "a positive finite number"


def non_negative(v) -> str | None:
    """A finite number >= 0."""
    return None if _is_number(v) and math.isfinite(v) and v >= 0 else "0 or a positive finite number"


def finite(v) -> str | None:
    return None if _is_number(v) and math.isfinite(v) else "a finite number"


def one_of(names: Iterable[str] | Callable[[], Iterable[str]]) -> Check:
    """One of ``names`` (or of what a function returns, for registries filled at import time)."""
    def check(v):
        allowed = list(names() if callable(names) else names)
        return None if v in allowed else f"one of {', '.join(map(str, allowed))}"
    check.choices = names  # the CLI offers these as the flag's choices
    return check


def each(inner: Check) -> Check:
    """Every element of a tuple passes ``inner``."""
    def check(v):
        for x in v:
            problem = inner(x)
            if problem:
                return f"{problem} each"
        return None
    check.element = inner  # the CLI checks each value as it is parsed
    return check


def optional(inner: Check) -> Check:
    """None, or a value that passes ``inner``."""
    def check(v):
        return None if v is None else inner(v)
    check.choices = getattr(inner, "choices", None)
    return check


def option(default=None, help: str = "", check: Check | None = None, *, group: str | None = None,
           flag: str | None = None, cli: bool = True, factory: Callable | None = None, metavar=None):
    """A config field with its help text and check: what the CLI turns into a flag (``flag`` overrides the name
    it derives, ``cli=False`` keeps it off the command line, ``group`` names its section in --help)."""
    meta = dict(help=help, check=check, group=group, flag=flag, cli=cli, metavar=metavar)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def label(f: dataclasses.Field) -> str:
    """How a field is named to a user: its flag without the dashes."""
    return (f.metadata.get("flag") or f.name.replace("_", "-")).lstrip("-")


def check_fields(cfg) -> None:
    """Run every field's check; the first problem raises a one-line LmrepError."""
    for f in dataclasses.fields(cfg):
        check = f.metadata.get("check")
        value = getattr(cfg, f.name)
        problem = check(value) if check else None
        if problem:
            raise LmrepError(f"{label(f)} must be {problem}, got {value!r}")
