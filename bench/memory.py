"""Peak resident memory of loading one offline model, in a fresh process, against the size of its fp32 weights.

    python bench/memory.py smollm2-135m          # load from the cache, one forward pass (every weight touched)
    python bench/memory.py gemma3-270m --convert  # the one-time GGUF conversion, into a temporary cache
    python bench/memory.py dinov2

Prints the weights, the peak RSS, the peak after the imports alone, and the ratio of the model's share to its
weights (1.0 would be the weights exactly once and nothing else).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import torch


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="smollm2-135m, gemma3-270m or dinov2")
    ap.add_argument("--convert", action="store_true", help="measure the conversion (a temporary cache folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.convert:
        os.environ["LMREP_CACHE"] = tempfile.mkdtemp(prefix="lmrep-memory-")
    import transformers  # noqa: F401  (imports are not the model's memory)
    from lmrep import load_model
    from lmrep.vision.dinov2 import load_dinov2_s14
    base, t = peak_mib(), time.time()
    if args.model == "dinov2":
        net = load_dinov2_s14()
        probe = (torch.zeros(1, 3, 224, 224),)
    else:
        net = load_model(args.model).model
        probe = (torch.tensor([[2, 818, 5279]]),)
    with torch.no_grad():
        net(*probe)
    weights = sum(p.numel() * p.element_size() for p in net.parameters()) // 2**20
    share = peak_mib() - base
    print(f"{args.model}{' (conversion)' if args.convert else ''}: fp32 weights {weights} MiB, peak RSS {peak_mib()} "
          f"MiB, after imports {base} MiB; model share {share} MiB = {share / weights:.2f} x weights; "
          f"{time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
