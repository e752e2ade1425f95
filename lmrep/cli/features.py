"""`lmrep features`: the page's 16-panel feature grids of an LM layer seen through a ViT patch stem, and how much
each patch moved, over several seeds."""
from __future__ import annotations

import argparse
import json
import sys

from ..layers import HEAD_HELP, HEADS
from ..runs import RunDir
from ..stats import fmt
from ..vision.features import IMAGES, PANELS, FeaturesConfig, render_seed, report
from ..vision.hybrid import Hybrid, HybridConfig
from ..vision.objectives import OBJECTIVES
from ..vision.param import PARAMS
from ..vision.render import OPTIMIZERS, RenderConfig
from ..vision.vit import KNOWN_VITS, load_vit
from .args import add_model_args, model_from_args, value_type

# --quick: small image, few steps, two seeds (2 CPU cores, a few minutes); full: the page's 224 px
QUICK = dict(image_size=96, steps=24, seeds=2)
FULL = dict(image_size=224, steps=256, seeds=3)
COUNT = value_type(int, lambda v: None if v >= 1 else "1 or more")
INDEX = value_type(int, lambda v: None if v >= 0 else "0 or more")
POSITIVE = value_type(float, lambda v: None if 0 < v < float("inf") else "a positive finite number")


def add_hybrid_args(p: argparse.ArgumentParser) -> None:
    """The model options of the vision commands: an LM (--model ...) behind a ViT stem (--vit ...)."""
    add_model_args(p, default="gpt2", about="LM whose blocks read the patches: gpt2 (default; --untrained works "
                                            "offline), hub name, folder")
    g = p.add_argument_group("vision")
    g.add_argument("--vit", default="vit-b16",
                   help=f"ViT whose patch stem feeds the LM: {', '.join(KNOWN_VITS)}, a hub name or a folder "
                        "(default: vit-b16)")
    g.add_argument("--vit-untrained", action="store_true", help="random weights for a hub/folder ViT's config")
    g.add_argument("--no-vit-positions", action="store_true", help="leave out the ViT's patch position embedding")
    g.add_argument("--no-lm-positions", action="store_true", help="leave out the LM's own position embedding")
    g.add_argument("--no-causal", action="store_true", help="drop the LM's causal mask: patches see each other")
    g.add_argument("--image-size", type=COUNT, help="side of the square image in pixels (224; quick 96)")


def hybrid_from_args(args) -> Hybrid:
    lm = model_from_args(args)
    vit = load_vit(args.vit, untrained=args.vit_untrained, seed=args.seed, device=args.device, dtype=args.dtype)
    cfg = HybridConfig(vit_positions=not args.no_vit_positions, lm_positions=not args.no_lm_positions,
                       causal=not args.no_causal)
    return Hybrid(vit, lm, cfg)


def preset(args, name: str):
    """An option's value: as given, else the --quick or the full default."""
    given = getattr(args, name, None)
    return given if given is not None else (QUICK if args.quick else FULL)[name]


def register(sub) -> None:
    p = sub.add_parser("features", help="feature grids of an LM layer through a ViT patch stem")
    add_hybrid_args(p)
    d = FeaturesConfig()
    g = p.add_argument_group("objective")
    g.add_argument("--layer", default=d.layer, help="LM layer: 0..n_layers or a name like blocks.3.hook_resid_post "
                                                    f"(default: {d.layer})")
    g.add_argument("--head", default=d.head, choices=list(HEADS), help=f"{HEAD_HELP} (default: {d.head})")
    g.add_argument("--kind", dest="objective", default=d.objective, choices=sorted(OBJECTIVES),
                   help="neuron: one neuron over all patches; patch: all neurons of one patch (default: neuron)")
    g.add_argument("--indices", type=INDEX, nargs="+", help="neurons or patches, one panel each (default: 0..15)")
    t = p.add_argument_group("optimisation")
    t.add_argument("--param", default=d.param, choices=sorted(PARAMS),
                   help=f"pixels or Fourier-space parameters (default: {d.param})")
    t.add_argument("--blur", action=argparse.BooleanOptionalAction, default=d.blur, help="Gaussian blur each step")
    t.add_argument("--sigma", type=POSITIVE, nargs=2, default=list(d.sigma), metavar=("START", "END"),
                   help="the blur's sigma, start -> end (default: 2.4 0.8)")
    t.add_argument("--jitter", type=INDEX, default=d.jitter, help=f"random shift in pixels, 0: off (default: "
                                                                   f"{d.jitter})")
    t.add_argument("--octave", action=argparse.BooleanOptionalAction, default=d.octave,
                   help="the original scripts' octaves: zoom 2.5-2.68x and random-crop back")
    t.add_argument("--steps", type=COUNT, help="optimiser steps (256; quick 24)")
    t.add_argument("--optimizer", default=d.render.optimizer, choices=OPTIMIZERS,
                   help="gd: gradient steps scaled so each image's largest moves lr (keeps per-patch differences); "
                        f"adam: every pixel moves about lr (default: {d.render.optimizer})")
    t.add_argument("--lr", type=POSITIVE, default=d.render.lr,
                   help=f"step size, falling linearly to lr/10 (default: {d.render.lr})")
    t.add_argument("--seeds", type=COUNT, help="starting noises: --seed, --seed+1, ... (3; quick 2)")
    t.add_argument("--quick", action="store_true", help="small and short: 96 px, 24 steps, 2 seeds")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default: runs/features-<config hash>)")
    o.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(run=run)


def run(args) -> int:
    cfg = FeaturesConfig(layer=args.layer, head=args.head, objective=args.objective,
                         indices=tuple(args.indices) if args.indices else FeaturesConfig().indices,
                         seeds=tuple(range(args.seed, args.seed + preset(args, "seeds"))), param=args.param,
                         blur=args.blur, sigma=tuple(args.sigma), jitter=args.jitter, octave=args.octave,
                         image_size=preset(args, "image_size"),
                         render=RenderConfig(steps=preset(args, "steps"), lr=args.lr, optimizer=args.optimizer))
    cfg.check()
    hybrid = hybrid_from_args(args)
    layer = hybrid.at(cfg.layer, cfg.head)
    grid = hybrid.vit.grid(cfg.image_size, cfg.image_size)
    run_dir = RunDir.create("features", dict(
        features=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=args.model, trained=not args.untrained,
        vit=args.vit, vit_trained=hybrid.vit.trained, layer_name=layer.name, grid=list(grid), dtype=args.dtype),
        args.out)
    run_dir.reset(PANELS)
    images = {}
    for s in cfg.seeds:
        print(f"seed {s}: rendering {len(cfg.indices)} panels of {layer.name} ...", file=sys.stderr)
        recs, imgs = render_seed(hybrid, cfg, s, progress=True)
        for r in recs:
            run_dir.append_jsonl(PANELS, r)
        images[f"seed{s}"] = imgs
    run_dir.save_tensors(IMAGES, images)
    summary = report(run_dir)
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
    print(f"run folder: {run_dir.path}  (config.json, panels.jsonl, summary.json, images.safetensors, grid.png, "
          "change.png, profile.png)")
