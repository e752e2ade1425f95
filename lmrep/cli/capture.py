"""`lmrep capture`: a layer's output for each prompt, saved as an observer would hold it (lmrep.inversion.states)."""
from __future__ import annotations

import sys

from ..records.checks import non_negative
from ..errors import LmrepError
from ..models.layers import layer_model
from ..inversion import states
from .args import OUT_FILE, add_layer_args, add_model_args, add_prompt_args, model_from_args, read_prompts, value_type


def register(sub) -> None:
    p = sub.add_parser("capture")
    add_prompt_args(p, "capture")
    add_model_args(p, dtype=False)
    add_layer_args(p)
    o = p.add_argument_group("states")
    o.add_argument("--dtype", default="float32", choices=list(states.STORE_DTYPES),
                   help="what the states are stored in (the model runs in float32; default: float32)")
    o.add_argument("--noise", type=value_type(float, non_negative), default=0.0,
                   help="add Gaussian noise of SIGMA times each position's RMS (default: 0)", metavar="SIGMA")
    o.add_argument("--no-ids", action="store_true", help="leave the token ids out of the file (then an inversion "
                                                         "of it cannot be scored)")
    o.add_argument("--out", type=OUT_FILE, required=True, metavar="FILE",
                   help="the .safetensors file to write (default: none; required)")
    p.set_defaults(run=run)


def run(args) -> int:
    if not args.out.endswith(".safetensors"):
        raise LmrepError(f"--out '{args.out}' must name a .safetensors file")
    prompts = read_prompts(args.text, args.prompts_file)
    lm = model_from_args(args, dtype="float32")
    target = layer_model(lm, args.layer, args.head)
    ids = [lm.encode(p) for p in prompts]  # every prompt is checked before any work starts
    dtype = states.STORE_DTYPES[args.dtype]
    tensors = states.capture(target, ids, dtype, args.noise, args.seed)
    states.save(args.out, tensors, states.header(target, dtype, args.noise, None if args.no_ids else ids))
    width = tensors[0].shape[1]
    print(f"captured {len(tensors)} tensor(s) of width {width} ({', '.join(str(len(t)) for t in tensors)} "
          f"positions) from {lm.name} {target.name} in {args.dtype} -> {args.out}", file=sys.stderr)
    return 0
