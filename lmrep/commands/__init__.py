"""Subcommands of the lmrep CLI. Each module has ``register(subparsers)``, which adds its parser and sets ``run``."""
from . import invert, models, features, reconstruct_image, reproduce, report, walk

COMMANDS = [invert, models, features, reconstruct_image, reproduce, report, walk]
