"""`lmrep reconstruct-image`: rebuild images from each layer's output, for an LM behind a ViT patch stem and for a
ViT, and compare how much of the image each layer keeps (L2, PSNR, SSIM, error per patch in token order)."""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import torch

from ..errors import LmrepError
from ..runs import RunDir
from ..vision.figures import psnr_by_depth, reconstruction_grid
from ..vision.images import available, load_image
from ..vision.reconstruct import ReconstructConfig, image_metrics, reconstruct
from ..vision.vit import KNOWN_VITS, load_vit, vit_layer_model
from .common import nonneg_int, positive_float, positive_int
from .features import add_hybrid_args, hybrid_from_args

QUICK = dict(image_size=96, steps=80, images=["chelsea"])
FULL = dict(image_size=224, steps=1000, images=["chelsea", "astronaut"])


def register(sub) -> None:
    p = sub.add_parser("reconstruct-image", help="rebuild an image from each layer's output (LM via ViT stem, ViT)")
    p.add_argument("images", nargs="*", help=f"image files or sample names ({', '.join(available())}); "
                                             "default chelsea (full: chelsea, astronaut)")
    add_hybrid_args(p)
    g = p.add_argument_group("layers")
    g.add_argument("--layers", type=nonneg_int, nargs="+", help="LM depths to try (default all; quick 4 of them)")
    g.add_argument("--compare", default="dinov2-s14",
                   help=f"the ViT to compare with, run whole ({', '.join(KNOWN_VITS)}, hub name, folder, none)")
    g.add_argument("--compare-layers", type=nonneg_int, nargs="+", help="its depths (default all; quick 4)")
    d = ReconstructConfig()
    t = p.add_argument_group("optimisation")
    t.add_argument("--steps", type=positive_int, help="Adam steps per layer (1000; quick 80)")
    t.add_argument("--lr", type=positive_float, default=d.lr, help="Adam, falling linearly to lr/10")
    t.add_argument("--quick", action="store_true", help="96 px, 80 steps, layers 0, 1, n/4, n/2, one image")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default runs/reconstruct-image-<config hash>)")
    o.add_argument("--json", action="store_true", help="print one JSON object per layer (JSON Lines)")
    p.set_defaults(run=run)


def depths(given: list[int] | None, n: int, quick: bool) -> list[int]:
    """Depths to run: as given (checked), else 0, 1, n/4, n/2 under --quick, else every depth 0..n."""
    if given:
        bad = [k for k in given if k > n]
        if bad:
            raise LmrepError(f"layer {bad[0]} is out of range: this model has {n} blocks, so use 0..{n}")
        return sorted(set(given))
    return sorted({0, 1, n // 4, n // 2}) if quick else list(range(n + 1))


def run(args) -> int:
    preset = QUICK if args.quick else FULL
    size = args.image_size or preset["image_size"]
    cfg = ReconstructConfig(steps=args.steps or preset["steps"], lr=args.lr)
    names = args.images or preset["images"]
    for name in names:
        load_image(name, 8)  # every image is checked before any work starts
    hybrid = hybrid_from_args(args)
    models = [(f"{args.vit} stem + {args.model}{'' if hybrid.lm.trained else ' (untrained)'}", hybrid.vit.patch_size,
               [hybrid.at(k) for k in depths(args.layers, hybrid.n_layers, args.quick)])]
    if args.compare != "none":
        vit = load_vit(args.compare, seed=args.seed, device=args.device, dtype=args.dtype)
        models.append((f"{args.compare}{'' if vit.trained else ' (untrained)'}", vit.patch_size,
                       [vit_layer_model(vit, k) for k in depths(args.compare_layers, vit.n_layers, args.quick)]))
    sizes = {label: side(size, patch) for label, patch, _ in models}
    run_dir = RunDir.create("reconstruct-image", dict(
        reconstruct=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=args.model, trained=hybrid.lm.trained,
        vit=args.vit, compare=args.compare, image_size=sizes, images=names, seed=args.seed, dtype=args.dtype,
        layers={label: [m.name for m in layer_models] for label, _, layer_models in models}), args.out)
    run_dir.reset("layers.jsonl")
    tensors, records = {}, []
    for label, patch, layer_models in models:
        images = {name: load_image(name, sizes[label]).to(hybrid.vit.device) for name in names}
        tensors.update({f"{label}/{name}/original": img.cpu() for name, img in images.items()})
        for m in layer_models:
            for name, img in images.items():
                print(f"{label}: {m.name}, {name} ...", file=sys.stderr)
                out = reconstruct(m, img, cfg, seed=args.seed, progress=True)
                rec = dict(model=label, depth=m.spec.depth, layer=m.name, image=name, image_size=sizes[label],
                           output_l1=out["output_l1"], relative_output_l1=out["relative_output_l1"],
                           loss_start=out["curve"][0], loss_end=out["curve"][-1],
                           **image_metrics(out["image"].cpu(), img.cpu(), patch))
                tensors[f"{label}/{name}/{m.spec.depth}"] = out["image"].cpu()
                records.append(rec)
                run_dir.append_jsonl("layers.jsonl", rec)
                if args.json:
                    print(json.dumps({k: v for k, v in rec.items() if k != "per_patch_mse"}), flush=True)
    run_dir.save_tensors("images.safetensors", tensors)
    run_dir.write_json("summary.json", summarize(records))
    draw(run_dir)
    if not args.json:
        print_table(records, run_dir)
    return 0


def side(size: int, patch: int) -> int:
    """The image side a model with this patch size gets: ``size`` rounded down to a whole number of patches
    (224 stays 224 for 16- and 14-px patches: 14 x 14 and 16 x 16 patches; 96 gives 96 and 84: 6 x 6 each)."""
    if size < patch:
        raise LmrepError(f"image size {size} is smaller than the patch size {patch}: use --image-size {patch} or more")
    return (size // patch) * patch


def summarize(records: list[dict]) -> dict:
    """Per model and depth: mean and standard error over images of PSNR, SSIM, L2 and the front/back ratio."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["model"], r["depth"], r["layer"])].append(r)
    out = defaultdict(list)
    order = list(dict.fromkeys(r["model"] for r in records))  # models in the order they ran
    for (model, depth, layer), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        row = dict(depth=depth, layer=layer, n_images=len(rs))
        for key in ("psnr", "ssim", "l2", "front_back", "relative_output_l1"):
            t = torch.tensor([r[key] for r in rs], dtype=torch.float64)
            row[key] = dict(mean=float(t.mean()), sem=float(t.std() / len(t) ** 0.5) if len(t) > 1 else None)
        out[model].append(row)
    return dict(out)


def draw(run_dir: RunDir) -> None:
    """reconstructions.png (originals and reconstructions by layer, both models) and psnr.png, from the run's
    JSON and saved images."""
    from safetensors.torch import load_file
    records = run_dir.read_jsonl("layers.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    tensors = load_file(str(run_dir / "images.safetensors"))
    rows = []
    for model in summary:
        for name in dict.fromkeys(r["image"] for r in records):
            recs = sorted((r for r in records if r["model"] == model and r["image"] == name), key=lambda r: r["depth"])
            rows.append((f"{model}\n{name}", tensors[f"{model}/{name}/original"][0],
                         [(f"{r['depth']}: {r['psnr']:.1f} dB", tensors[f"{model}/{name}/{r['depth']}"][0])
                          for r in recs]))
    reconstruction_grid(rows, run_dir / "reconstructions.png", "reconstruction from each layer's output (depth: PSNR)")
    curves = {model: ([r["depth"] for r in rows_], [r["psnr"]["mean"] for r in rows_],
                      None if rows_[0]["psnr"]["sem"] is None else [r["psnr"]["sem"] for r in rows_])
              for model, rows_ in summary.items()}
    psnr_by_depth(curves, run_dir / "psnr.png", "how much of the image each layer keeps")


def print_table(records: list[dict], run_dir: RunDir) -> None:
    print(f"\n{'model':<40} {'layer':<26} {'image':<10} {'PSNR':>6} {'SSIM':>6} {'L2':>7} {'front/back':>10}")
    for r in records:
        print(f"{r['model'][:40]:<40} {r['layer']:<26} {r['image'][:10]:<10} {r['psnr']:6.2f} {r['ssim']:6.3f} "
              f"{r['l2']:7.2f} {r['front_back']:10.2f}")
    print(f"run folder: {run_dir.path}  (config.json, layers.jsonl, summary.json, images.safetensors, "
          "reconstructions.png, psnr.png)")
