"""Flags built from the library's config dataclasses, and the options several commands share.

A config field made with ``lmrep.records.checks.option`` carries its help text and its check; ``add_config`` turns each
such field into a flag (type and choices from its annotation and check, the default shown in --help), and
``config_from`` turns the parsed flags back into the config, refusing a flag set where it does nothing. A bad value
is rejected by the same check the library uses, as one line and exit code 2, before any work starts.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import TYPE_CHECKING

from ..records.checks import check_applies, check_out_dir, check_out_file, label, read_lines, seed_value
from ..errors import LmrepError
from ..records.inputs import device_problem
from ..models.names import DEFAULT_MODEL, HEAD_HELP, HEADS

if TYPE_CHECKING:
    from ..models.load import LoadedModel

_WORDS = {int: "a whole number", float: "a number"}


def value_type(parse_as: type, check=None):
    """An argparse type: text -> ``parse_as``, then ``check`` (one line on failure). It keeps ``parse_as`` and ``check``
    so that tests can find every numeric flag's range."""
    def parse(text: str):
        try:
            v = parse_as(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {_WORDS.get(parse_as, parse_as.__name__)}") from None
        problem = check(v) if check else None
        if problem:
            raise argparse.ArgumentTypeError(f"{text} must be {problem}")
        return v
    parse.__name__ = parse_as.__name__  # argparse names the type in its messages
    parse.parse_as, parse.check = parse_as, check
    return parse


def _checked(fn, what: str):
    """An argparse type that runs one of lmrep's checks on a path (one line on failure)."""
    def parse(text: str):
        try:
            fn(text, what)
        except LmrepError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text
    parse.__name__ = "path"
    return parse


DEVICE = value_type(str, device_problem)
OUT_DIR = _checked(check_out_dir, "run folder")
OUT_FILE = _checked(check_out_file, "output file")
SITE_DIR = _checked(check_out_dir, "site folder")


def _shape(hint) -> tuple[type, object]:
    """A field's annotation -> (element type, nargs): int -> (int, None); tuple[float, float] -> (float, 2);
    tuple[int, ...] -> (int, '+'); X | None -> X's."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return args[0], "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
    if args and typing.get_origin(hint) is not tuple and len(args) == 1:
        return _shape(args[0])
    return hint, None


def add_config(parser: argparse.ArgumentParser, cls, group: str | None = None, skip: tuple[str, ...] = (),
               defaults: dict | None = None, shown: dict[str, str] | None = None) -> None:
    """One flag per CLI field of dataclass ``cls`` (fields in ``skip`` left out), in the --help section their
    ``group`` names (``group`` here for those without one). ``defaults`` replaces a field's default on the command
    line (None: a preset fills it in), ``shown`` what --help says the default is."""
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
        element, nargs = _shape(hints[f.name])
        check = meta.get("check")
        when = meta.get("when")
        about = meta.get("help", "") + (f"; only with {when.text()}" if when else "")
        help_ = about + _default_text((shown or {}).get(f.name, default))
        flag = "--" + label(f)
        if element is bool:  # argparse adds the default to a boolean flag's help itself
            where.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=about)
            continue
        element_check = getattr(check, "element", None) if nargs else check
        choices = getattr(check, "choices", None)
        kw = dict(dest=f.name, default=list(default) if nargs and default is not None else default, help=help_,
                  metavar=meta.get("metavar"))
        if choices is not None:
            kw["choices"] = list(choices() if callable(choices) else choices)
            kw["metavar"] = kw["metavar"] or None
        elif element is not str or element_check is not None:
            kw["type"] = value_type(element, element_check)
        if nargs:
            kw["nargs"] = nargs
        where.add_argument(flag, **kw)


def _default_text(default) -> str:
    if default is None or default == () or default == []:
        return ""
    shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
    return f" (default: {shown})"


def defaults_of(args: argparse.Namespace) -> dict:
    """What each flag of the command would be without being given (from the command's parser)."""
    parser = getattr(args, "_parser", None)
    return {} if parser is None else {a.dest: a.default for a in parser._actions if a.default is not argparse.SUPPRESS}


def config_from(cls, args: argparse.Namespace, **overrides):
    """The config ``cls`` from parsed flags: every field the namespace has (lists become tuples), then
    ``overrides``. A flag given where it does nothing (a field whose ``when`` does not hold) is refused; the
    config's own ``check`` is left to the caller (it may need the model)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            v = getattr(args, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
    cfg = cls(**{**values, **overrides})
    check_applies(cfg, {k: v for k, v in defaults_of(args).items() if k in values and k not in overrides})
    return cfg


def refuse_unused(args: argparse.Namespace, why: dict[str, str]) -> None:
    """One line for the first flag in ``why`` (dest -> why it does nothing here) that was set to anything but its
    default: an option that silently does nothing misleads."""
    defaults = defaults_of(args)
    parser = getattr(args, "_parser", None)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings} if parser else {}
    for dest, reason in why.items():
        if dest in defaults and getattr(args, dest, None) != defaults[dest]:
            raise LmrepError(f"{flags.get(dest, dest)} does nothing {reason}: leave it out")


def add_prompt_args(p: argparse.ArgumentParser, what: str) -> None:
    """TEXT... and --prompts-file: the prompts a command works on."""
    p.add_argument("text", nargs="*", help=f"prompts to {what}")
    p.add_argument("--prompts-file", help="a UTF-8 text file with one prompt per line, # starts a comment "
                                          "(default: none)")


def add_model_args(p: argparse.ArgumentParser, default: str = DEFAULT_MODEL, about: str | None = None,
                   dtype: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=default, help=about or f"known name, hub name or local folder (default: "
                                                                 f"{default})")
    g.add_argument("--untrained", action="store_true", help="random weights from the model's config (under --seed)")
    g.add_argument("--seed", type=value_type(int, seed_value), default=0,
                   help="seed for weights (untrained), noise and inits (default: 0)")
    add_device_args(g, dtype)
    g.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")


def add_device_args(g, dtype: bool = True) -> None:
    """--device, and --dtype (the model's) unless the command's --dtype means something else."""
    g.add_argument("--device", default="cpu", type=DEVICE, help="cpu, cuda, cuda:N or auto (default: cpu)")
    if dtype:
        g.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                       help="the models' floating-point type (default: float32)")


def add_layer_args(p, default_layer: str = "1", auto: bool = False) -> None:
    """--layer and --head; ``auto``: the command can also find the layer of observed states (--layer auto)."""
    found = "; auto (with --states): find the layer and head that produced the states" if auto else ""
    p.add_argument("--layer", default=default_layer,
                   help="blocks to run (0..n_layers) or a layer name such as blocks.3.hook_resid_post"
                        f"{found} (default: {default_layer})")
    p.add_argument("--head", default="none", choices=list(HEADS), help=f"{HEAD_HELP} (default: none)")


def add_output_args(p, command: str, json_help: str = "print one JSON object per result (JSON Lines)"
                    ) -> argparse._ArgumentGroup:
    o = p.add_argument_group("output")
    add_out_arg(o, command)
    o.add_argument("--json", action="store_true", help=json_help)
    return o


def add_out_arg(g, command: str) -> None:
    """--out (checked as a place for a run folder when parsed) and --new."""
    g.add_argument("--out", type=OUT_DIR, help=f"run folder (default: runs/{command}-<config hash>); rerunning the "
                                               "same command resumes it")
    g.add_argument("--new", action="store_true",
                   help="if the run folder holds another configuration, use a fresh one beside it (<folder>-2, ...)"
                        " instead of stopping")
    add_wait_arg(g)


def add_wait_arg(g) -> None:
    """--wait: another lmrep process writing the same run folder is waited for instead of stopping this one."""
    g.add_argument("--wait", action="store_true",
                   help="if another lmrep process is writing the run folder, wait for it to finish (then resume "
                        "what it left) instead of stopping")


def model_from_args(args, dtype: str | None = None) -> LoadedModel:
    from ..models.load import load_model  # here: reading and checking the arguments needs no torch
    return load_model(args.model, untrained=args.untrained, seed=args.seed, device=args.device,
                      dtype=dtype or args.dtype, trust_remote_code=args.trust_remote_code)


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


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    """Where the items of a sweep or an experiment run: worker processes here, or Ray."""
    from ..experiments.executors import EXECUTORS
    g = parser.add_argument_group("executor")
    g.add_argument("--executor", default=next(iter(EXECUTORS)), choices=list(EXECUTORS),
                   help="; ".join(f"{name}: {make.__doc__}" for name, make in EXECUTORS.items())
                   + f" (default: {next(iter(EXECUTORS))})")
    g.add_argument("--address", help="a running Ray cluster to join (e.g. ray://head:10001 or auto); default: "
                                     "start a local Ray")
    g.add_argument("--workers", type=value_type(int, lambda v: None if v >= 1 else "1 or more"),
                   help="worker processes (local) or CPUs of the local Ray (default: the cores here)")
