"""`lmrep models`: the known models, whether each runs offline here, and its size."""
from __future__ import annotations

import json

from ..models import cache_dir, model_status


def register(sub) -> None:
    p = sub.add_parser("models", help="list the known models and whether they are available offline")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(run=run)


def run(args) -> int:
    rows = model_status()
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{'model':<20} {'size':>5}  {'offline':<8} about")
    for r in rows:
        print(f"{r['name']:<20} {r['size']:>5}  {'yes' if r['offline'] else 'no':<8} {r['about']}")
    print(f"\nconverted weights are cached in {cache_dir()} (set LMREP_CACHE to move them); "
          "any other Hugging Face causal LM loads by hub name or folder with --model")
    return 0
