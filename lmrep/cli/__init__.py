"""The lmrep command line: one thin module per subcommand (parse -> library call -> print)."""
from __future__ import annotations

import argparse
import sys

from ..errors import LmrepError
from ..records.inputs import shown, text_problem
from ..records.lock import wait_for_writers
from .parser import COMMANDS, Commands, Parser, command_in

ALL = "all"


def build_parser(only: str | None = ALL) -> argparse.ArgumentParser:
    """The parser: every command's flags (``only=ALL``), or only those of command ``only`` (None: none), the
    others listed with their help. Only the modules of the commands built are imported: ``lmrep --help`` and a
    wrong command answer before torch is loaded."""
    import importlib
    parser = Parser(prog="lmrep", description="What do the layers of a language model keep about their input?")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (module, about) in COMMANDS.items():
        if only in (ALL, name):
            importlib.import_module(f"{__name__}.{module}").register(Commands(sub))
        else:
            sub.add_parser(name, help=about)
    for p in sub.choices.values():
        p.set_defaults(_parser=p)  # so a command can tell which flags were set (args.defaults_of)
    return parser


def _quiet_libraries() -> None:
    """Our own progress bars and messages only: transformers' load bars would bury the one-line errors."""
    from transformers.utils import logging
    logging.set_verbosity_error()
    logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for text in argv:  # every argument is text a user typed: one check before any is read
        if text_problem(text):
            print(f"lmrep: error: argument {shown(text)} {text_problem(text)}: give plain UTF-8 text", file=sys.stderr)
            return 2
    args = build_parser(command_in(argv)).parse_args(argv)
    _quiet_libraries()
    wait_for_writers(getattr(args, "wait", False))
    try:
        return args.run(args) or 0
    except LmrepError as e:
        print(f"lmrep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk, not the input: still one line
        where = f" '{e.filename}'" if e.filename else ""
        print(f"lmrep {args.command}: error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nlmrep {args.command}: interrupted; what finished is in the run folder", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
