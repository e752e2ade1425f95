"""`lmrep features`: the page's 16-panel feature grids of an LM layer seen through a ViT patch stem, and how much
each patch moved, over several seeds."""
from __future__ import annotations

import argparse
import json
import sys

from ..runs import RunDir
from ..vision.features import FeaturesConfig, render_seed, summarize
from ..vision.figures import change_heatmaps, change_profile, feature_grid
from ..vision.hybrid import Hybrid, HybridConfig
from ..vision.objectives import KINDS
from ..vision.param import PARAMS
from ..vision.render import OPTIMIZERS, RenderConfig
from ..vision.vit import KNOWN_VITS, load_vit
from .common import add_model_args, model_from_args, nonneg_int, positive_float, positive_int

# --quick: small image, few steps, two seeds (2 CPU cores, a few minutes); full: the page's 224 px
QUICK = dict(image_size=96, steps=24, seeds=2)
FULL = dict(image_size=224, steps=256, seeds=3)


def add_hybrid_args(p: argparse.ArgumentParser) -> None:
    """The model options of the vision commands: an LM (--model ...) behind a ViT stem (--vit ...)."""
    add_model_args(p)
    p.set_defaults(model="gpt2")  # the page's LM, and the width of ViT-B/16
    model_opt = next(a for a in p._actions if a.dest == "model")  # argparse has no public way to edit a help
    model_opt.help = "LM whose blocks read the patches: gpt2 (default; --untrained works offline), hub name, folder"
    g = p.add_argument_group("vision")
    g.add_argument("--vit", default="vit-b16",
                   help=f"ViT whose patch stem feeds the LM: {', '.join(KNOWN_VITS)}, a hub name or a folder")
    g.add_argument("--vit-untrained", action="store_true", help="random weights for a hub/folder ViT's config")
    g.add_argument("--no-vit-positions", action="store_true", help="leave out the ViT's patch position embedding")
    g.add_argument("--no-lm-positions", action="store_true", help="leave out the LM's own position embedding")
    g.add_argument("--no-causal", action="store_true", help="drop the LM's causal mask: patches see each other")
    g.add_argument("--image-size", type=positive_int, help="side of the square image in pixels (224; quick 96)")


def hybrid_from_args(args) -> Hybrid:
    lm = model_from_args(args)
    vit = load_vit(args.vit, untrained=args.vit_untrained, seed=args.seed, device=args.device, dtype=args.dtype)
    cfg = HybridConfig(vit_positions=not args.no_vit_positions, lm_positions=not args.no_lm_positions,
                       causal=not args.no_causal)
    return Hybrid(vit, lm, cfg)


def pick(args, name: str):
    """An option's value: as given, else the --quick or the full default."""
    given = getattr(args, name, None)
    return given if given is not None else (QUICK if args.quick else FULL)[name]


def register(sub) -> None:
    p = sub.add_parser("features", help="feature grids of an LM layer through a ViT patch stem")
    add_hybrid_args(p)
    d = FeaturesConfig()
    g = p.add_argument_group("objective")
    g.add_argument("--layer", default=d.layer, help="LM layer: 0..n_layers or a name like blocks.3.hook_resid_post")
    g.add_argument("--head", default=d.head, choices=["none", "norm", "logits", "logits_nonorm"])
    g.add_argument("--kind", default=d.kind, choices=sorted(KINDS),
                   help="neuron: one neuron over all patches; patch: all neurons of one patch")
    g.add_argument("--indices", type=nonneg_int, nargs="+", help="neurons or patches, one panel each (0..15)")
    t = p.add_argument_group("optimisation")
    t.add_argument("--param", default=d.param, choices=sorted(PARAMS), help="pixels or Fourier-space parameters")
    t.add_argument("--blur", action=argparse.BooleanOptionalAction, default=d.blur, help="Gaussian blur each step")
    t.add_argument("--sigma", type=positive_float, nargs=2, default=list(d.sigma), metavar=("START", "END"))
    t.add_argument("--jitter", type=nonneg_int, default=d.jitter, help="random shift in pixels (0: off)")
    t.add_argument("--octave", action=argparse.BooleanOptionalAction, default=d.octave,
                   help="the original scripts' octaves: zoom 2.5-2.68x and random-crop back")
    t.add_argument("--steps", type=positive_int, help="optimiser steps (256; quick 24)")
    t.add_argument("--optimizer", default=d.render.optimizer, choices=OPTIMIZERS,
                   help="gd: gradient steps scaled so each image's largest moves lr (keeps per-patch differences); "
                        "adam: every pixel moves about lr")
    t.add_argument("--lr", type=positive_float, default=d.render.lr, help="step size, falling linearly to lr/10")
    t.add_argument("--seeds", type=positive_int, help="starting noises: --seed, --seed+1, ... (3; quick 2)")
    t.add_argument("--quick", action="store_true", help="small and short: 96 px, 24 steps, 2 seeds")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default runs/features-<config hash>)")
    o.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(run=run)


def run(args) -> int:
    cfg = FeaturesConfig(layer=args.layer, head=args.head, kind=args.kind,
                         indices=tuple(args.indices) if args.indices else FeaturesConfig().indices,
                         seeds=tuple(range(args.seed, args.seed + pick(args, "seeds"))), param=args.param,
                         blur=args.blur, sigma=tuple(args.sigma), jitter=args.jitter, octave=args.octave,
                         image_size=pick(args, "image_size"),
                         render=RenderConfig(steps=pick(args, "steps"), lr=args.lr, optimizer=args.optimizer))
    cfg.check()
    hybrid = hybrid_from_args(args)
    layer = hybrid.at(cfg.layer, cfg.head)
    grid = hybrid.vit.grid(cfg.image_size, cfg.image_size)
    run_dir = RunDir.create("features", dict(
        features=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=args.model, trained=not args.untrained,
        vit=args.vit, vit_trained=hybrid.vit.trained, layer_name=layer.name, dtype=args.dtype), args.out)
    run_dir.reset("panels.jsonl")
    records, images = [], {}
    for s in cfg.seeds:
        print(f"seed {s}: rendering {len(cfg.indices)} panels of {layer.name} ...", file=sys.stderr)
        recs, imgs = render_seed(hybrid, cfg, s, progress=True)
        for r in recs:
            run_dir.append_jsonl("panels.jsonl", r)
        records += recs
        images[f"seed{s}"] = imgs
    run_dir.save_tensors("images.safetensors", images)
    summary = dict(layer=layer.name, kind=cfg.kind, grid=list(grid), **summarize(records, cfg.kind))
    run_dir.write_json("summary.json", summary)
    draw(run_dir)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary, run_dir)
    return 0


def draw(run_dir: RunDir) -> None:
    """The run's figures, from its JSON and saved images: grid.png (first seed), change.png, profile.png."""
    from safetensors.torch import load_file
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    records = run_dir.read_jsonl("panels.jsonl")
    images = load_file(str(run_dir / "images.safetensors"))
    first = min(r["seed"] for r in records)
    panels = [r for r in records if r["seed"] == first]
    what = f"{config['vit']} stem + {config['model']}{'' if config['trained'] else ' (untrained)'}, {summary['layer']}"
    titles = [f"{r['panel']}: {summary['kind']} {r['index']}" for r in panels]
    feature_grid(images[f"seed{first}"], titles, run_dir / "grid.png", f"{what}, seed {first}")
    by_panel = [[sum(v) / len(v) for v in zip(*[r["change"] for r in records if r["panel"] == q["panel"]])]
                for q in panels]
    change_heatmaps(by_panel, tuple(summary["grid"]), titles, run_dir / "change.png",
                    f"{what}: per-patch change, mean of {summary['n_seeds']} seeds")
    change_profile(summary["change_per_patch"], summary["change_per_patch_sem"], run_dir / "profile.png",
                   f"{what}\nchange along the token order (mean over panels; band: s.e. over seeds)")


def print_summary(s: dict, run_dir: RunDir) -> None:
    def ms(d):
        return f"{d['mean']:.3f}" + (f" ± {d['sem']:.3f}" if d.get("sem") is not None else "")
    print(f"\n{s['layer']}, {s['kind']} objective: {s['n_panels']} panels x {s['n_seeds']} seeds, "
          f"{s['n_patches']} patches ({s['grid'][0]}x{s['grid'][1]})")
    print(f"  objective rose in {s['increased']:.0%} of panels (gain {ms(s['objective_gain'])})")
    print(f"  change centroid along the token order  {ms(s['centroid'])}   (0 first patch, 0.5 even, 1 last)")
    print(f"  first-quarter / last-quarter change    {ms(s['front_back'])}")
    if s["kind"] == "patch":
        print(f"  share of change before / at / after the target patch: {ms(s['before'])} / {ms(s['at'])} / "
              f"{ms(s['after'])}")
    print(f"run folder: {run_dir.path}  (config.json, panels.jsonl, summary.json, images.safetensors, grid.png, "
          "change.png, profile.png)")
