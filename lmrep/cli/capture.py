"""`lmrep capture`: a layer's output for each prompt, saved as an observer would hold it (lmrep.inversion.states)."""
from __future__ import annotations

import sys

from ..errors import LmrepError
from ..inversion.formats import GROUPS_HELP, INTS, QUANTS, STORED, group_problem
from ..records.checks import non_negative
from .args import OUT_FILE, add_layer_args, add_model_args, add_prompt_args, model_from_args, read_prompts, value_type


def register(sub) -> None:
    p = sub.add_parser("capture")
    add_prompt_args(p, "capture")
    add_model_args(p, dtype=False)
    add_layer_args(p)
    o = p.add_argument_group("states")
    o.add_argument("--dtype", default="float32", choices=list(STORED),
                   help="what the states are stored in (the model runs in float32; default: float32)")
    o.add_argument("--noise", type=value_type(float, non_negative), default=0.0,
                   help="add Gaussian noise of SIGMA times each position's RMS (default: 0)", metavar="SIGMA")
    o.add_argument("--quant", choices=list(QUANTS), help="store the states quantised as a key/value cache would be "
                   "(symmetric, absmax scales kept beside them; default: none, --dtype as it is)")
    o.add_argument("--quant-zero", action="store_true", help="integer formats: min-max scales with a zero point "
                   "each, codes from 0 (as KIVI and quanto store caches; default: symmetric)")
    o.add_argument("--quant-group", default="channel", metavar="G", type=value_type(str, group_problem),
                   help=f"what one scale covers: {GROUPS_HELP} (default: channel)")
    o.add_argument("--no-ids", action="store_true", help="leave the token ids out of the file (then an inversion "
                                                         "of it cannot be scored)")
    o.add_argument("--out", type=OUT_FILE, required=True, metavar="FILE",
                   help="the .safetensors file to write (default: none; required)")
    p.set_defaults(run=run)


def run(args) -> int:
    if not args.out.endswith(".safetensors"):
        raise LmrepError(f"--out '{args.out}' must name a .safetensors file")
    if args.quant and args.dtype != "float32":
        raise LmrepError("--quant stores its own format: leave --dtype out")
    if args.quant_zero and args.quant not in INTS:
        raise LmrepError(f"--quant-zero needs an integer --quant ({', '.join(INTS)})")
    prompts = read_prompts(args.text, args.prompts_file)
    from ..inversion import states  # here, after the checks that need no torch
    from ..inversion.degrade import Quantisation
    from ..models.layers import layer_model
    quant = Quantisation(args.quant, args.quant_group, args.quant_zero) if args.quant else None
    lm = model_from_args(args, dtype="float32")
    target = layer_model(lm, args.layer, args.head)
    ids = [lm.encode(p) for p in prompts]  # every prompt is checked before any work starts
    dtype = states.STORE_DTYPES[args.dtype]
    tensors = states.capture_file(args.out, target, ids, dtype, args.noise, args.seed, keep_ids=not args.no_ids,
                                  progress=True, quant=quant)
    zero = " with zero points" if quant and quant.zero else ""
    width, stored = tensors[0].shape[1], f"{quant.kind} (scale per {quant.group}{zero})" if quant else args.dtype
    print(f"captured {len(tensors)} tensor(s) of width {width} ({', '.join(str(len(t)) for t in tensors)} "
          f"positions) from {lm.name} {target.name} in {stored} -> {args.out}", file=sys.stderr)
    return 0
