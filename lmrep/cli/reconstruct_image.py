"""`lmrep reconstruct-image`: rebuild images from each layer's output, for an LM behind a ViT patch stem and for a
ViT, and compare how much of the image each layer keeps (L2, PSNR, SSIM, error per patch in token order)."""
from __future__ import annotations

import json

from ..records.checks import at_least
from ..errors import LmrepError
from ..models.layers import resolve_layer
from ..records.folder import RunDir
from ..vision.images import available, load_image
from ..vision.reconstruct import ReconstructConfig, Subject, reconstruct_all
from ..vision.vit import KNOWN_VITS, load_vit, vit_layer_model
from .args import add_config, add_out_arg, config_from, refuse_unused, value_type
from .features import add_hybrid_args, hybrid_from_args

QUICK = dict(image_size=96, steps=80, images=["chelsea"])
FULL = dict(image_size=224, steps=1000, images=["chelsea", "astronaut"])


def register(sub) -> None:
    p = sub.add_parser("reconstruct-image")
    p.add_argument("images", nargs="*", help=f"image files or sample names ({', '.join(available())}); "
                                             "default chelsea (full: chelsea, astronaut)")
    add_hybrid_args(p)
    p.add_argument("--image-size", type=value_type(int, at_least(1, 2048)),
                   help=f"side of the square image in pixels (default: {FULL['image_size']}; --quick "
                        f"{QUICK['image_size']})")
    g = p.add_argument_group("layers")
    g.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="LM layers to try, as in --layer: depths 0..n_layers or names such as "
                        "blocks.3.hook_resid_post (default: every depth; --quick 0, 1, n/4, n/2)")
    g.add_argument("--compare", default="dinov2-s14",
                   help=f"the ViT to compare with, run whole ({', '.join(KNOWN_VITS)}, hub name, folder, none; "
                        "default: dinov2-s14, trained)")
    g.add_argument("--compare-layers", nargs="+", metavar="LAYER",
                   help="its layers, the same way (default: every depth; --quick 4 of them)")
    add_config(p, ReconstructConfig, defaults=dict(steps=None),
               shown=dict(steps=f"{FULL['steps']}; --quick {QUICK['steps']}"))
    p.add_argument("--quick", action="store_true",
                   help="96 px, 80 steps, layers 0, 1, n/4, n/2, one image (default: off)")
    o = p.add_argument_group("output")
    add_out_arg(o, "reconstruct-image")
    o.add_argument("--json", action="store_true", help="print one JSON object per layer (JSON Lines)")
    p.set_defaults(run=run)


def layers(given: list[str] | None, n: int, quick: bool) -> list[str]:
    """Layers to run, each checked (a depth 0..n or a name), in depth order: as given, else 0, 1, n/4, n/2 under
    --quick, else every depth 0..n."""
    if not given:
        return [str(k) for k in (sorted({0, 1, n // 4, n // 2}) if quick else range(n + 1))]
    specs = {resolve_layer(x, n): x for x in given}  # the same layer twice runs once
    return [specs[s] for s in sorted(specs, key=lambda s: (s.depth, s.head))]


def side(size: int, patch: int) -> int:
    """The image side a model with this patch size gets: ``size`` rounded down to a whole number of patches
    (224 stays 224 for 16- and 14-px patches: 14 x 14 and 16 x 16 patches; 96 gives 96 and 84: 6 x 6 each)."""
    if size < patch:
        raise LmrepError(f"image size {size} is smaller than the patch size {patch}: use --image-size {patch} or more")
    return (size // patch) * patch


def run(args) -> int:
    preset = QUICK if args.quick else FULL
    size = args.image_size or preset["image_size"]
    cfg = config_from(ReconstructConfig, args, steps=args.steps or preset["steps"])
    if args.compare == "none":
        refuse_unused(args, {"compare_layers": "with --compare none"})
    names = args.images or preset["images"]
    for name in names:
        load_image(name, 8)  # every image is checked before any work starts
    hybrid = hybrid_from_args(args)
    lm_layers = layers(args.layers, hybrid.n_layers, args.quick)
    hybrid_side = side(size, hybrid.vit.patch_size)
    hybrid.check_patches((hybrid_side // hybrid.vit.patch_size) ** 2)
    subjects = [Subject(f"{hybrid.vit.name} stem + {args.model}{'' if hybrid.lm.trained else ' (untrained)'}",
                        hybrid.vit.patch_size, hybrid_side, [hybrid.at(k) for k in lm_layers])]
    if args.compare != "none":
        vit = load_vit(args.compare, seed=args.seed, device=args.device, dtype=args.dtype)
        vit_layers = [vit_layer_model(vit, k) for k in layers(args.compare_layers, vit.n_layers, args.quick)]
        subjects.append(Subject(f"{args.compare}{'' if vit.trained else ' (untrained)'}", vit.patch_size,
                                side(size, vit.patch_size), vit_layers))
    run_dir = RunDir.create("reconstruct-image", dict(
        reconstruct=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=args.model, trained=hybrid.lm.trained,
        vit=hybrid.vit.name, compare=args.compare, image_size={s.label: s.side for s in subjects}, images=names,
        seed=args.seed, dtype=args.dtype, layers={s.label: [m.name for m in s.layers] for s in subjects}),
        args.out, new=args.new)
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
    print(f"run folder: {run_dir.path}  ({', '.join(run_dir.files())})")
