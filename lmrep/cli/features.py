"""`lmrep features`: the page's 16-panel feature grids of an LM layer seen through a ViT patch stem, and how much
each patch moved, over several seeds."""
from __future__ import annotations

import argparse
import json

from typing import TYPE_CHECKING

from ..records.checks import at_least
from ..records.folder import RunDir
from ..records.stats import fmt
from ..vision.config import (AUTO, FEATURES_FULL, FEATURES_QUICK, KNOWN_VITS, FeaturesConfig, HybridConfig,
                             RenderConfig, preset)
from .args import add_config, add_model_args, add_out_arg, config_from, model_from_args, value_type

if TYPE_CHECKING:
    from ..vision.hybrid import Hybrid

PRESET = dict(image_size=None, steps=None)  # filled from FEATURES_QUICK or FEATURES_FULL
SHOWN = {k: f"{FEATURES_FULL[k]}; --quick {FEATURES_QUICK[k]}" for k in FEATURES_FULL}


def add_hybrid_args(p: argparse.ArgumentParser) -> None:
    """The model options of the vision commands: an LM (--model ...) behind a ViT stem (--vit ...)."""
    add_model_args(p, about="LM whose blocks read the patches: known name, hub name or folder (default: "
                            "smollm2-135m, trained and offline)")
    g = p.add_argument_group("vision")
    g.add_argument("--vit", default=AUTO,
                   help=f"ViT whose patch stem feeds the LM: auto (a ViT-B/16 stem at the LM's width), "
                        f"{', '.join(KNOWN_VITS)}, a hub name or a folder (default: auto)")
    g.add_argument("--vit-untrained", action="store_true",
                   help="random weights for a trained ViT's config (dinov2-s14, a hub name or folder)")
    add_config(p, HybridConfig)


def hybrid_from_args(args) -> Hybrid:
    """The LM and the stem the vision options name."""
    from ..vision.hybrid import build_hybrid  # here: reading the arguments needs no torch
    lm = model_from_args(args)
    return build_hybrid(lm, args.vit, config_from(HybridConfig, args), args.model, vit_untrained=args.vit_untrained,
                        seed=args.seed, device=args.device, dtype=args.dtype)


def register(sub) -> None:
    p = sub.add_parser("features")
    add_hybrid_args(p)
    add_config(p, FeaturesConfig, defaults=PRESET, shown={**SHOWN, "indices": "0..15"})
    add_config(p, RenderConfig, defaults=PRESET, shown=SHOWN)
    t = p.add_argument_group("optimisation")
    t.add_argument("--seeds", type=value_type(int, at_least(1, 1000)),
                   help=f"starting noises: --seed, --seed+1, ... (default: {FEATURES_FULL['seeds']}; "
                        f"--quick {FEATURES_QUICK['seeds']})")
    t.add_argument("--quick", action="store_true", help="small and short: 96 px, 24 steps, 2 seeds (default: off)")
    o = p.add_argument_group("output")
    add_out_arg(o, "features")
    o.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(run=run)


def run(args) -> int:
    render = config_from(RenderConfig, args, steps=preset(args.steps, "steps", args.quick))
    cfg = config_from(FeaturesConfig, args, render=render, image_size=preset(args.image_size, "image_size", args.quick),
                      seeds=tuple(range(args.seed, args.seed + preset(args.seeds, "seeds", args.quick)))).check()
    from ..vision.features import features_run  # here, after the checks that need no torch
    summary, run_dir = features_run(hybrid_from_args(args), cfg, args.model, args.dtype, args.out, new=args.new)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary, run_dir)
    return 0


def print_summary(s: dict, run_dir: RunDir) -> None:
    print(f"\n{s['layer']}, {s['objective']} objective: {s['n_panels']} panels x {s['n_seeds']} seeds, "
          f"{s['n_patches']} patches ({s['grid'][0]}x{s['grid'][1]})")
    print(f"  objective rose in {s['increased']:.0%} of panels (gain {fmt(s['objective_gain'], 3)})")
    print(f"  change centroid along the token order  {fmt(s['centroid'], 3)}   (0 first patch, 0.5 even, 1 last)")
    print(f"  first-quarter / last-quarter change    {fmt(s['front_back'], 3)}")
    if s["objective"] == "patch":
        print(f"  share of change before / at / after the target patch: {fmt(s['before'], 3)} / "
              f"{fmt(s['at'], 3)} / {fmt(s['after'], 3)}")
    print(f"run folder: {run_dir.path}  ({', '.join(run_dir.files())})")
