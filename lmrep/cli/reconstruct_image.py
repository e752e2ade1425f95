"""`lmrep reconstruct-image`: rebuild images from each layer's output, for an LM behind a ViT patch stem and for a
ViT, and compare how much of the image each layer keeps (L2, PSNR, SSIM, error per patch in token order)."""
from __future__ import annotations

import json

from ..records.checks import at_least
from ..records.folder import RunDir
from ..vision.config import KNOWN_VITS, RECONSTRUCT_FULL, RECONSTRUCT_QUICK, ReconstructConfig
from ..vision.samples import available, check_images, expand
from .args import add_config, add_out_arg, config_from, refuse_unused, value_type
from .features import add_hybrid_args, hybrid_from_args


def register(sub) -> None:
    p = sub.add_parser("reconstruct-image")
    p.add_argument("images", nargs="*", help=f"image files, sample names or sets ({', '.join(available())}); "
                                             "default chelsea (full: chelsea, astronaut)")
    add_hybrid_args(p)
    p.add_argument("--image-size", type=value_type(int, at_least(1, 2048)),
                   help=f"side of the square image in pixels (default: {RECONSTRUCT_FULL['image_size']}; --quick "
                        f"{RECONSTRUCT_QUICK['image_size']})")
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
               shown=dict(steps=f"{RECONSTRUCT_FULL['steps']}; --quick {RECONSTRUCT_QUICK['steps']}"))
    p.add_argument("--quick", action="store_true",
                   help="96 px, 80 steps, layers 0, 1, n/4, n/2, one image (default: off)")
    o = p.add_argument_group("output")
    add_out_arg(o, "reconstruct-image")
    o.add_argument("--json", action="store_true", help="print one JSON object per layer (JSON Lines)")
    p.set_defaults(run=run)


def run(args) -> int:
    preset = RECONSTRUCT_QUICK if args.quick else RECONSTRUCT_FULL
    size = args.image_size or preset["image_size"]
    cfg = config_from(ReconstructConfig, args, steps=args.steps or preset["steps"])
    if args.compare == "none":
        refuse_unused(args, {"compare_layers": "with --compare none"})
    names = expand(args.images or preset["images"])  # a set's name stands for its images
    check_images(names)  # a missing or unreadable image: one line before torch loads
    from ..vision.subjects import hybrid_subject, reconstruct_run, vit_subject  # after those checks
    hybrid = hybrid_from_args(args)
    subjects = [hybrid_subject(hybrid, args.model, size, args.layers, args.quick)]
    if args.compare != "none":
        subjects.append(vit_subject(args.compare, size, args.compare_layers, args.quick, seed=args.seed,
                                    device=args.device, dtype=args.dtype))
    on_record = (lambda rec: print(json.dumps({k: v for k, v in rec.items() if k != "per_patch_mse"}), flush=True)
                 ) if args.json else None
    records, run_dir = reconstruct_run(hybrid, subjects, names, cfg, args.model, args.compare, args.seed, args.dtype,
                                       args.out, new=args.new, on_record=on_record)
    if not args.json:
        print_table(records, run_dir)
    return 0


def print_table(records: list[dict], run_dir: RunDir) -> None:
    print(f"\n{'model':<40} {'layer':<26} {'image':<10} {'PSNR':>6} {'SSIM':>6} {'L2':>7} {'front/back':>10}")
    for r in records:
        print(f"{r['model'][:40]:<40} {r['layer']:<26} {r['image'][:10]:<10} {r['psnr']:6.2f} {r['ssim']:6.3f} "
              f"{r['l2']:7.2f} {r['front_back']:10.2f}")
    print(f"run folder: {run_dir.path}  ({', '.join(run_dir.files())})")
