"""The lmrep command line: one thin module per subcommand (parse -> library call -> print)."""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys

from ..errors import LmrepError
from ..records.inputs import one_line, shown, text_problem
from ..records.lock import LOCKS, wait_for_writers
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
    """Our own progress bars and messages only: transformers' load bars would bury the one-line errors. Said through
    the environment, which transformers and the hub read when they load (a refusal never loads them: importing
    transformers to quiet it would cost seconds), and to them directly where they already have."""
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules or "huggingface_hub" in sys.modules:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


class _Messages(logging.Handler):
    """The library's log messages (resuming, which model was used, ...) as ``lmrep: ...`` lines on stderr, whatever
    sys.stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"lmrep: {record.getMessage()}", file=sys.stderr)


def _show_messages() -> None:
    logger = logging.getLogger("lmrep")
    if not any(isinstance(h, _Messages) for h in logger.handlers):
        logger.addHandler(_Messages())
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for text in argv:  # every argument is text a user typed: one check before any is read
        if text_problem(text):
            print(f"lmrep: error: argument {shown(text)} {text_problem(text)}: give plain UTF-8 text", file=sys.stderr)
            return 2
    args = build_parser(command_in(argv)).parse_args(argv)
    _quiet_libraries()
    _show_messages()
    wait_for_writers(getattr(args, "wait", False))
    notes = Notes(sys.stderr)
    sys.stderr, LOCKS.started = notes, notes.release
    try:
        code = args.run(args) or 0
    except LmrepError as e:
        return notes.refuse(f"lmrep {args.command}: error: {one_line(str(e))}")
    except OSError as e:  # the disk, not the input: still one line
        where = f" {shown(str(e.filename))}" if e.filename else ""
        return notes.refuse(f"lmrep {args.command}: error: cannot write or read{where}: {e.strerror or e}")
    except KeyboardInterrupt:
        notes.release()
        print(f"\nlmrep {args.command}: interrupted; what finished is in the run folder", file=notes.real)
        return 130
    finally:
        sys.stderr, LOCKS.started = notes.real, None
    notes.release()
    return code


class Notes(io.TextIOBase):
    """stderr while a command reads and checks what it was given: what it says there is held back until its work
    starts (its run folder is taken) or it ends well, so that a refusal is its one line alone."""

    def __init__(self, real):
        self.real, self.held, self.open = real, [], False

    def write(self, s: str) -> int:
        if self.open:
            return self.real.write(s)
        self.held.append(s)
        return len(s)

    def flush(self) -> None:
        if self.open:
            self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def release(self) -> None:
        """Work starts: what was held goes out, and everything after it at once."""
        if not self.open:
            self.open = True
            self.real.write("".join(self.held))
            self.held = []

    def refuse(self, line: str) -> int:
        """The one line of a refusal (notes held back are dropped; the work had not started); exit code 2."""
        self.held = []
        print(line, file=self.real)
        return 2


if __name__ == "__main__":
    sys.exit(main())
