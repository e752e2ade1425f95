"""One reader per class of input, each with one check: the text of the command line, device names, and the names
and files a sweep spec gives (which stay inside the spec's folder). Whatever a user typed or a file held that goes
into a message passes ``shown`` first (quoted, unprintable characters escaped, cut short).
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable

from ..errors import LmrepError

DATA = Path(__file__).resolve().parents[1] / "data"  # the prompt lists lmrep ships
DEVICE = re.compile(r"cpu|auto|cuda(:\d{1,3})?")


# ---- names and files a spec gives: they stay where the spec is ---------------------------------------------------

def single_name(value, what: str) -> str:
    """A name that becomes one folder: a single path component of printable characters, not hidden."""
    if not isinstance(value, str) or not value or len(value) > 100:
        raise LmrepError(f"{what} must be a name of 1 to 100 characters, got {shown(value)}")
    if value in (".", "..") or value.startswith(".") or any(c in value for c in "/\\") or not value.isprintable():
        raise LmrepError(f"{what} {shown(value)} must be a plain folder name (no '/', no leading '.', no control "
                         "characters)")
    return value


class SpecFolder:
    """Where the files a spec names may be: its own folder (names resolve relative to it), lmrep's own shipped data,
    and the files the command line allows explicitly (a spec cannot allow itself anything)."""

    def __init__(self, spec: str | Path, allowed: Iterable[str | Path] = ()):
        self.spec = Path(spec)
        self.folder = self.spec.resolve().parent
        self.allowed = {Path(a).expanduser().resolve() for a in allowed}

    def file(self, name, key: str) -> Path:
        """The file ``name`` names, resolved in the spec's folder; one line if it is elsewhere."""
        if not isinstance(name, str) or not name or "\x00" in name:
            raise LmrepError(f"{self.spec}: '{key}' must be a file name, got {shown(name)}")
        path = (self.folder / Path(name).expanduser()).resolve()
        if path in self.allowed or any(root in path.parents for root in (self.folder, DATA)):
            return path
        raise LmrepError(f"{self.spec}: '{key}' {shown(name)} is outside the spec's folder: put the file beside the "
                         f"spec, or allow it on the command line (--allow {shown(name)})")

    def model(self, name, key: str):
        """A model the spec names: a known or hub name as it is; a path (absolute, climbing, or a folder beside the
        spec) must be a folder inside the spec's folder, and is given resolved."""
        if not isinstance(name, str) or not (Path(name).is_absolute() or ".." in Path(name).parts or
                                             name.startswith("~") or (self.folder / name).exists()):
            return name
        return str(self.file(name, key))

    def out(self, name, key: str = "out") -> Path:
        """A folder the spec asks to write: relative and never climbing (``--out`` on the command line is free)."""
        if not isinstance(name, str) or not name or "\x00" in name or Path(name).is_absolute() or \
                ".." in Path(name).parts or name.startswith("~"):
            raise LmrepError(f"{self.spec}: '{key}' {shown(name)} must be a relative folder without '..': give an "
                             "--out on the command line to write elsewhere")
        return Path(name)


def one_line(text: str) -> str:
    """``text`` with every unprintable character (line breaks, escapes, bytes that were not UTF-8) written as its
    escape, so that a message holding what a user gave stays one line and cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value, most: int = 60) -> str:
    """A value a user gave, as it may go into a one-line message: quoted, control characters and other
    unprintable ones escaped, cut at ``most`` characters."""
    if not isinstance(value, str):
        value = repr(value)
    text = f"'{one_line(value)}'"
    return text if len(text) <= most else text[:most - 1] + "…'"


def text_problem(text: str) -> str | None:
    """What is wrong with a piece of text a user gave (None: nothing): bytes that were not UTF-8 (they reach
    Python as lone surrogates) or control characters other than tab and newline."""
    for i, c in enumerate(text):
        if "\ud800" <= c <= "\udfff":
            return f"is not valid UTF-8 (byte 0x{ord(c) & 0xff:02x} at character {i})"
        if unicodedata.category(c) == "Cc" and c not in "\t\n":
            return f"holds the control character {repr(c)[1:-1]} at character {i}"
    return None


def check_text(text: str, what: str) -> str:
    """``text``, or a one-line LmrepError saying why it cannot be used."""
    problem = text_problem(text)
    if problem:
        raise LmrepError(f"{what} {shown(text)} {problem}: give plain UTF-8 text")
    return text


def device_problem(name) -> str | None:
    """None for a device name lmrep runs on (cpu, cuda, cuda:N, auto), else what it must be. Whether this machine
    has it is the model loader's check (it needs torch)."""
    return None if isinstance(name, str) and DEVICE.fullmatch(name) else "cpu, cuda, cuda:N or auto"


def check_states_file(path: str | Path) -> Path:
    """A states file's path, once it is a non-empty regular file (one line if it is missing, a folder, a FIFO or
    another non-file, or empty); what it holds is read with torch (inversion.states.load)."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "not found"
        raise LmrepError(f"states file {shown(str(path))} {what}: give a .safetensors or .npy file")
    if path.stat().st_size == 0:
        raise LmrepError(f"states file {shown(str(path))} is empty (0 bytes): give a .safetensors or .npy file")
    return path


def md_code(text) -> str:
    """``text`` as a Markdown code span, shown literally whatever it holds (HTML, emphasis, backticks): fenced by
    more backticks than its longest run of them, on one line."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_link(path: str) -> str:
    """A relative path as a Markdown link target: every character that could end or change the link encoded."""
    from urllib.parse import quote
    return quote(path, safe="/")
