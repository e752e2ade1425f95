"""Arguments shared by several subcommands, with checks that turn bad values into one-line errors."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LmrepError
from ..models import DEFAULT_MODEL, LoadedModel, load_model


def _whole_number_at_least(lowest: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"{v} must be {lowest} or more")
        return v
    return parse


positive_int = _whole_number_at_least(1)
nonneg_int = _whole_number_at_least(0)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return v


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"known name, hub name or local folder ({DEFAULT_MODEL})")
    g.add_argument("--untrained", action="store_true", help="random weights from the model's config (under --seed)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed for weights (untrained), noise and inits")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    g.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")


def add_layer_args(p: argparse.ArgumentParser, default_layer: str = "1") -> None:
    p.add_argument("--layer", default=default_layer,
                   help="blocks to run (0..n_layers) or a layer name such as blocks.3.hook_resid_post")
    p.add_argument("--head", default="none", choices=["none", "norm", "logits", "logits_nonorm"],
                   help="what follows the blocks: nothing, the final norm, norm + LM head, LM head alone")


def model_from_args(args) -> LoadedModel:
    return load_model(args.model, untrained=args.untrained, seed=args.seed, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)


def read_prompts(texts: list[str], prompts_file: str | None) -> list[str]:
    """Prompts from the command line and/or a file (one per line, blank lines and #-comments skipped)."""
    prompts = list(texts or [])
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise LmrepError(f"prompts file '{prompts_file}' not found: give a text file with one prompt per line")
        prompts += [line.strip() for line in path.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise LmrepError("no prompt given: pass TEXT or --prompts-file FILE")
    for p in prompts:
        if not p.strip():
            raise LmrepError("empty prompt: give some text to invert")
    return prompts
