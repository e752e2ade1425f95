"""`lmrep models`: the known language and vision models, whether each runs offline here, and its size."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models")
    p.add_argument("--json", action="store_true", help="one JSON object per model, with its kind (default: a table)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..models.load import cache_dir, model_status  # here: reading the arguments needs no torch
    from ..vision.vit import vit_status
    rows = [dict(kind="language", **r) for r in model_status()] + [dict(kind="vision", **r) for r in vit_status()]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    for kind, flag in (("language", "--model"), ("vision", "--vit / --compare")):
        print(f"{kind} models ({flag})")
        print(f"  {'name':<18} {'size':>5}  {'offline':<8} about")
        for r in (r for r in rows if r["kind"] == kind):
            print(f"  {r['name']:<18} {r['size']:>5}  {'yes' if r['offline'] else 'no':<8} {r['about']}")
        print()
    print(f"converted weights are cached in {cache_dir()} (set LMREP_CACHE to move them); any other Hugging Face "
          "causal LM or ViT-like model loads by hub name or folder")
    return 0
