"""The command line's parser class and its list of commands: what ``lmrep --help`` and a wrong command need, so
that both answer before any command's module (and torch with it) is imported."""
from __future__ import annotations

import argparse

from ..records.inputs import one_line

# command -> (its module under lmrep.cli, what --help says it does), in the order --help lists them
COMMANDS = {
    "invert": ("invert", "recover prompts from a layer's output, or the input of captured states"),
    "capture": ("capture", "save a layer's output for each prompt to a safetensors file"),
    "models": ("models", "list the known models (language and vision) and whether they are available offline"),
    "features": ("features", "feature grids of an LM layer through a ViT patch stem"),
    "reconstruct-image": ("reconstruct_image", "rebuild an image from each layer's output (LM via ViT stem, ViT)"),
    "reproduce": ("reproduce", "rerun the page's language experiments and write a report"),
    "sweep": ("sweep", "run a grid (models x layers x methods x prompts x seeds) and experiments from a TOML spec"),
    "report": ("report", "rebuild the figures and summaries of run folders from their JSON (no model needed)"),
    "walk": ("walk", "walk the input while a layer's output stays put (manifold walks)"),
}


class Parser(argparse.ArgumentParser):
    """Bad arguments give one line (what is wrong and how to see the options) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class Commands:
    """The subparsers action, handing each command's module the parser it adds with its help from COMMANDS."""

    def __init__(self, sub):
        self.sub = sub

    def add_parser(self, name: str, **kw) -> argparse.ArgumentParser:
        return self.sub.add_parser(name, help=COMMANDS[name][1], **kw)


def command_in(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one of COMMANDS."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None
