"""Flags built from the library's config dataclasses, and the options several commands share.

A config field made with ``lmrep.checks.option`` carries its help text and its check; ``add_config`` turns each
such field into a flag (type and choices from its annotation and check, the default shown in --help), and
``config_from`` turns the parsed flags back into the config. A bad value is rejected by the same check the
library uses, as one line and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from ..checks import label
from ..errors import LmrepError
from ..layers import HEAD_HELP, HEADS
from ..models import DEFAULT_MODEL, LoadedModel, load_model

_WORDS = {int: "a whole number", float: "a number"}


class Parser(argparse.ArgumentParser):
    """Bad arguments give one line (what is wrong and how to see the options) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def value_type(kind: type, check=None):
    """An argparse type: text -> ``kind``, then ``check`` (one line on failure)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {_WORDS.get(kind, kind.__name__)}") from None
        problem = check(v) if check else None
        if problem:
            raise argparse.ArgumentTypeError(f"{text} must be {problem}")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _shape(hint) -> tuple[type, object]:
    """A field's annotation -> (element type, nargs): int -> (int, None); tuple[float, float] -> (float, 2);
    tuple[int, ...] -> (int, '*'); X | None -> X's."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return args[0], "*" if len(args) == 2 and args[1] is Ellipsis else len(args)
    if args and typing.get_origin(hint) is not tuple and len(args) == 1:
        return _shape(args[0])
    return hint, None


def add_config(parser: argparse.ArgumentParser, cls, group: str | None = None, skip: tuple[str, ...] = (),
               defaults: dict | None = None) -> None:
    """One flag per CLI field of dataclass ``cls`` (fields in ``skip`` left out), in the --help section their
    ``group`` names (``group`` here for those without one)."""
    hints, groups = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", False) or f.name in skip:
            continue
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING
                                       else f.default_factory())
        title = meta.get("group") or group
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        where = groups[title] if title else parser
        kind, nargs = _shape(hints[f.name])
        check = meta.get("check")
        help_ = meta.get("help", "") + _default_text(default)
        flag = "--" + label(f)
        if kind is bool:
            where.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        element_check = getattr(check, "element", None) if nargs else check
        choices = getattr(check, "choices", None)
        kw = dict(dest=f.name, default=list(default) if nargs else default, help=help_, metavar=meta.get("metavar"))
        if choices is not None:
            kw["choices"] = list(choices() if callable(choices) else choices)
            kw["metavar"] = kw["metavar"] or None
        else:
            kw["type"] = value_type(kind, element_check)
        if nargs:
            kw["nargs"] = nargs
        where.add_argument(flag, **kw)


def _default_text(default) -> str:
    if default is None or default == () or default == []:
        return ""
    shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
    return f" (default: {shown})"


def config_from(cls, args: argparse.Namespace, **overrides):
    """The config ``cls`` from parsed flags: every field the namespace has (lists become tuples), then
    ``overrides``; the config's own ``check`` is left to the caller (it may need the model)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            v = getattr(args, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**{**values, **overrides})


def add_prompt_args(p: argparse.ArgumentParser, what: str) -> None:
    """TEXT... and --prompts-file: the prompts a command works on."""
    p.add_argument("text", nargs="*", help=f"prompts to {what}")
    p.add_argument("--prompts-file", help="a UTF-8 text file with one prompt per line (# starts a comment)")


def add_model_args(p: argparse.ArgumentParser, default: str = DEFAULT_MODEL, about: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=default, help=about or f"known name, hub name or local folder (default: "
                                                                 f"{default})")
    g.add_argument("--untrained", action="store_true", help="random weights from the model's config (under --seed)")
    g.add_argument("--seed", type=value_type(int, lambda v: None if v >= 0 else "0 or more"), default=0,
                   help="seed for weights (untrained), noise and inits (default: 0)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="(default: float32)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")


def add_layer_args(p, default_layer: str = "1") -> None:
    p.add_argument("--layer", default=default_layer,
                   help="blocks to run (0..n_layers) or a layer name such as blocks.3.hook_resid_post "
                        f"(default: {default_layer})")
    p.add_argument("--head", default="none", choices=list(HEADS), help=f"{HEAD_HELP} (default: none)")


def add_output_args(p, command: str) -> argparse._ArgumentGroup:
    o = p.add_argument_group("output")
    o.add_argument("--out", help=f"run folder (default: runs/{command}-<config hash>)")
    o.add_argument("--json", action="store_true", help="print one JSON object per result (JSON Lines)")
    return o


def model_from_args(args) -> LoadedModel:
    return load_model(args.model, untrained=args.untrained, seed=args.seed, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)


def read_prompts(texts: list[str], prompts_file: str | None) -> list[str]:
    """Prompts from the command line and/or a file (one per line, blank lines and #-comments skipped)."""
    prompts = list(texts or [])
    if prompts_file:
        prompts += read_lines(prompts_file, "prompts file")
    if not prompts:
        raise LmrepError("no prompt given: pass TEXT or --prompts-file FILE")
    for p in prompts:
        if not p.strip():
            raise LmrepError("empty prompt: give some text to invert")
    return prompts


def read_lines(path: str | Path, what: str) -> list[str]:
    """The non-blank, non-comment lines of a UTF-8 text file; one-line errors for a missing or non-text file."""
    path = Path(path)
    if not path.is_file():
        raise LmrepError(f"{what} '{path}' not found: give a text file with one prompt per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LmrepError(f"{what} '{path}' is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    if "\x00" in text:
        raise LmrepError(f"{what} '{path}' is a binary file: give a UTF-8 text file, one prompt per line")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
