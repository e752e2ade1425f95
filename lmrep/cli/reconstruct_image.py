"""`lmrep reconstruct-image`: rebuild images from each layer's output, for an LM behind a ViT patch stem and for a
ViT, and compare how much of the image each layer keeps (L2, PSNR, SSIM, error per patch in token order)."""
from __future__ import annotations

import json

from ..errors import LmrepError
from ..runs import RunDir
from ..vision.images import available, load_image
from ..vision.reconstruct import ReconstructConfig, Subject, reconstruct_all
from ..vision.vit import KNOWN_VITS, load_vit, vit_layer_model
from .features import COUNT, INDEX, POSITIVE, add_hybrid_args, hybrid_from_args

QUICK = dict(image_size=96, steps=80, images=["chelsea"])
FULL = dict(image_size=224, steps=1000, images=["chelsea", "astronaut"])


def register(sub) -> None:
    p = sub.add_parser("reconstruct-image", help="rebuild an image from each layer's output (LM via ViT stem, ViT)")
    p.add_argument("images", nargs="*", help=f"image files or sample names ({', '.join(available())}); "
                                             "default chelsea (full: chelsea, astronaut)")
    add_hybrid_args(p)
    g = p.add_argument_group("layers")
    g.add_argument("--layers", type=INDEX, nargs="+", help="LM depths to try (default all; quick 4 of them)")
    g.add_argument("--compare", default="dinov2-s14",
                   help=f"the ViT to compare with, run whole ({', '.join(KNOWN_VITS)}, hub name, folder, none; "
                        "default: dinov2-s14)")
    g.add_argument("--compare-layers", type=INDEX, nargs="+", help="its depths (default all; quick 4)")
    d = ReconstructConfig()
    t = p.add_argument_group("optimisation")
    t.add_argument("--steps", type=COUNT, help="Adam steps per layer (1000; quick 80)")
    t.add_argument("--lr", type=POSITIVE, default=d.lr, help=f"Adam, falling linearly to lr/10 (default: {d.lr})")
    t.add_argument("--quick", action="store_true", help="96 px, 80 steps, layers 0, 1, n/4, n/2, one image")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default: runs/reconstruct-image-<config hash>)")
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


def side(size: int, patch: int) -> int:
    """The image side a model with this patch size gets: ``size`` rounded down to a whole number of patches
    (224 stays 224 for 16- and 14-px patches: 14 x 14 and 16 x 16 patches; 96 gives 96 and 84: 6 x 6 each)."""
    if size < patch:
        raise LmrepError(f"image size {size} is smaller than the patch size {patch}: use --image-size {patch} or more")
    return (size // patch) * patch


def run(args) -> int:
    preset = QUICK if args.quick else FULL
    size = args.image_size or preset["image_size"]
    cfg = ReconstructConfig(steps=args.steps or preset["steps"], lr=args.lr)
    names = args.images or preset["images"]
    for name in names:
        load_image(name, 8)  # every image is checked before any work starts
    hybrid = hybrid_from_args(args)
    label = f"{args.vit} stem + {args.model}{'' if hybrid.lm.trained else ' (untrained)'}"
    subjects = [Subject(label, hybrid.vit.patch_size, side(size, hybrid.vit.patch_size),
                        [hybrid.at(k) for k in depths(args.layers, hybrid.n_layers, args.quick)])]
    if args.compare != "none":
        vit = load_vit(args.compare, seed=args.seed, device=args.device, dtype=args.dtype)
        layers = [vit_layer_model(vit, k) for k in depths(args.compare_layers, vit.n_layers, args.quick)]
        subjects.append(Subject(f"{args.compare}{'' if vit.trained else ' (untrained)'}", vit.patch_size,
                                side(size, vit.patch_size), layers))
    run_dir = RunDir.create("reconstruct-image", dict(
        reconstruct=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=args.model, trained=hybrid.lm.trained,
        vit=args.vit, compare=args.compare, image_size={s.label: s.side for s in subjects}, images=names,
        seed=args.seed, dtype=args.dtype, layers={s.label: [m.name for m in s.layers] for s in subjects}), args.out)
    run_dir.reset("layers.jsonl")
    on_record = (lambda rec: print(json.dumps({k: v for k, v in rec.items() if k != "per_patch_mse"}), flush=True)
                 ) if args.json else None
    records = reconstruct_all(run_dir, subjects, names, cfg, args.seed, hybrid.vit.device, on_record)
    if not args.json:
        print_table(records, run_dir)
    return 0


def print_table(records: list[dict], run_dir: RunDir) -> None:
    print(f"\n{'model':<40} {'layer':<26} {'image':<10} {'PSNR':>6} {'SSIM':>6} {'L2':>7} {'front/back':>10}")
    for r in records:
        print(f"{r['model'][:40]:<40} {r['layer']:<26} {r['image'][:10]:<10} {r['psnr']:6.2f} {r['ssim']:6.3f} "
              f"{r['l2']:7.2f} {r['front_back']:10.2f}")
    print(f"run folder: {run_dir.path}  (config.json, layers.jsonl, summary.json, images.safetensors, "
          "reconstructions.png, psnr.png)")
