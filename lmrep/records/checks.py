"""Values a user gives, checked in one place: config fields that carry their own help and check, so the library
and the CLI (which builds its flags from these fields) reject a bad value with the same one-line message; and the
one reader for the text files a user gives (prompt lists).

A check takes a value and returns None when it is fine, or what the value must be ("1 or more", "a positive finite
number"); ``check_fields`` turns that into ``LmrepError("steps must be 1 or more, got 0")``. Numeric checks carry
their range (``low``, ``high``, ``whole``) so the CLI and the tests can see it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import LmrepError
from .inputs import check_text

PSEUDO = ("/proc", "/sys", "/dev")  # file systems that hold no files of ours
Check = Callable[[Any], "str | None"]
SEED_MAX = 2 ** 32 - 1  # seeds are mixed with a prompt's hash into a 64-bit generator seed
COUNT_MAX = 10 ** 7  # any count: steps, batches, candidates, top-k, snapshots, pixels
STEPS_MAX = 10 ** 7  # optimisation steps of one run
SEEDS_MAX = 10 ** 4  # seeds of one run or spec


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ranged(check: Check, low, high, whole: bool, low_open: bool = False) -> Check:
    check.low, check.high, check.whole, check.low_open = low, high, whole, low_open
    return check


def at_least(lowest: int, most: int = COUNT_MAX) -> Check:
    """A whole number >= lowest and <= most: no count lmrep takes is unbounded (a count beyond what records and
    memory can hold would overflow or allocate past the machine long after the run started)."""
    want = f"{lowest} or more, up to {most}"

    def check(v):
        ok = _is_number(v) and (isinstance(v, int) or math.isfinite(v) and float(v).is_integer())
        return None if ok and lowest <= v <= most else want
    return _ranged(check, lowest, most, True)


steps_count = at_least(1, STEPS_MAX)  # optimisation steps: a loss per step is kept in the records
seeds_count = at_least(1, SEEDS_MAX)  # seeds of one run: each is a record per prompt


def krylov_fits(directions: int, blocks: int, dimension: int) -> None:
    """A Krylov space of ``blocks`` blocks of ``directions`` vectors lives in the walk's input space: its size
    cannot exceed that space's ``dimension`` (tokens x width of the shortest prompt)."""
    if directions * blocks > dimension:
        raise LmrepError(f"directions x krylov must be at most the input's dimension {dimension} (tokens x width of "
                         f"the shortest prompt), got {directions} x {blocks} = {directions * blocks}")


seed_value = at_least(0, SEED_MAX)  # a seed: 0 .. 2^32 - 1


def positive(v) -> str | None:
    """A finite number > 0."""
    return None if _is_number(v) and math.isfinite(v) and v > 0 else "a positive finite number"


_ranged(positive, 0, None, False, low_open=True)


def non_negative(v) -> str | None:
    """A finite number >= 0."""
    return None if _is_number(v) and math.isfinite(v) and v >= 0 else "0 or a positive finite number"


_ranged(non_negative, 0, None, False)


def finite(v) -> str | None:
    """A finite number."""
    return None if _is_number(v) and math.isfinite(v) else "a finite number"


_ranged(finite, None, None, False)


def boolean(v) -> str | None:
    """True or false."""
    return None if isinstance(v, bool) else "true or false"


def between(low: float, high: float) -> Check:
    """A finite number in [low, high]."""
    def check(v):
        return None if _is_number(v) and math.isfinite(v) and low <= v <= high else f"between {low} and {high}"
    return _ranged(check, low, high, False)


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
    for attr in ("low", "high", "whole", "low_open"):
        if hasattr(inner, attr):
            setattr(check, attr, getattr(inner, attr))
    return check


@dataclasses.dataclass(frozen=True)
class When:
    """Where a field does something: when field ``field`` of the same config is one of ``values``. Set to anything
    but its default elsewhere, the CLI refuses it (an option that silently does nothing misleads)."""
    field: str
    values: tuple

    def holds(self, cfg) -> bool:
        return getattr(cfg, self.field) in self.values

    def text(self) -> str:
        return f"--{self.field.replace('_', '-')} {' or '.join(map(str, self.values))}"


def option(default=None, help: str = "", check: Check | None = None, *, group: str | None = None,
           flag: str | None = None, cli: bool = True, factory: Callable | None = None, metavar=None,
           when: When | None = None):
    """A config field with its help text and check: what the CLI turns into a flag (``flag`` overrides the name
    it derives, ``cli=False`` keeps it off the command line, ``group`` names its section in --help, ``when`` says
    in which mode it applies)."""
    meta = dict(help=help, check=check, group=group, flag=flag, cli=cli, metavar=metavar, when=when)
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


def from_mapping(cls, values: dict, **fixed):
    """The config ``cls`` from a mapping keyed by its fields' labels (what a spec file holds: ``also`` for
    ``extra_models``), lists made tuples, ``fixed`` added; an unknown key or a value of the wrong type or range is
    one line (the fields' own checks, as on the command line)."""
    fields = {label(f): f for f in dataclasses.fields(cls) if f.name not in fixed}
    kw = {}
    for key, value in values.items():
        if key not in fields:
            raise LmrepError(f"unknown key '{key}': known keys are {', '.join(fields)}")
        f = fields[key]
        shape = getattr(f.default, "__class__", None) if f.default is not None else None
        if shape is tuple and not isinstance(value, (list, tuple)):
            raise LmrepError(f"{key} must be a list, got {value!r}")
        if shape is str and not isinstance(value, str):
            raise LmrepError(f"{key} must be text, got {value!r}")
        kw[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kw, **fixed)


def check_applies(cfg, defaults: dict[str, Any]) -> None:
    """Every field set to something other than ``defaults[name]`` must apply in the mode ``cfg`` is in (its
    ``when``); the first that does not raises a one-line LmrepError saying where it applies."""
    for f in dataclasses.fields(cfg):
        when = f.metadata.get("when")
        if when is None or f.name not in defaults or when.holds(cfg):
            continue
        value, default = getattr(cfg, f.name), defaults[f.name]
        if (tuple(value) if isinstance(value, list) else value) != (tuple(default) if isinstance(default, list)
                                                                       else default):
            raise LmrepError(f"--{label(f)} does nothing here: it applies with {when.text()}; leave it out")


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file's contents (a byte-order mark is dropped); one-line errors for a missing file, a folder,
    an unreadable file, a binary file and text in another encoding."""
    path = Path(path)
    if path.is_dir():
        raise LmrepError(f"{what} '{path}' is a folder: give a text file")
    if not path.is_file():
        raise LmrepError(f"{what} '{path}' not found: give a text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LmrepError(f"cannot read {what} '{path}': {e.strerror}") from None
    if b"\x00" in data:
        raise LmrepError(f"{what} '{path}' is a binary file: give a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LmrepError(f"{what} '{path}' is not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x}): "
                         "save it as UTF-8") from None


def read_lines(path: str | Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file that are not #-comments, stripped."""
    lines = [line.strip() for line in read_text(path, what).splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    for n, line in enumerate(lines):
        check_text(line, f"line {n + 1} of {what} '{path}':")
    return lines


# ---- checks on places to write, before anything is written ------------------------------------------------------

def _pseudo(path: Path) -> str | None:
    resolved = path.resolve()
    return next((p for p in PSEUDO if resolved == Path(p) or Path(p) in resolved.parents), None)


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path: str | Path, what: str = "run folder") -> Path:
    """The one check for an output folder: not an existing file, not under /proc, /sys or /dev, and creatable and
    writable by this process. Writes nothing."""
    if not str(path).strip():
        raise LmrepError(f"{what} is empty: give a path")
    path = Path(path).expanduser()
    if _pseudo(path):
        raise LmrepError(f"{what} '{path}' is under {_pseudo(path)}, which holds no files: give a folder on disk")
    if path.exists() and not path.is_dir():
        raise LmrepError(f"{what} '{path}' is an existing file: give a folder (a new one, or an earlier run's)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise LmrepError(f"{what} '{path}' cannot be created: '{base}' is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise LmrepError(f"{what} '{path}' cannot be written: no permission to write in '{base}'")
    return path


def check_out_file(path: str | Path, what: str = "output file") -> Path:
    """The same check for a file to be written (e.g. a combined report): not a folder, in a folder that exists and
    is writable."""
    if not str(path).strip():
        raise LmrepError(f"{what} is empty: give a path")
    path = Path(path).expanduser()
    if _pseudo(path):
        raise LmrepError(f"{what} '{path}' is under {_pseudo(path)}: give a file on disk")
    if path.is_dir():
        raise LmrepError(f"{what} '{path}' is a folder: give a file name, e.g. {path / 'report.md'}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise LmrepError(f"{what} '{path}' cannot be written: its folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise LmrepError(f"{what} '{path}' cannot be written: no permission")
    return path
