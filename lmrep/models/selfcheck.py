"""The first self-check of a loaded model: what lmrep reads equals what the model itself computes.

On a short probe it checks, against the model's own forward on the same token ids: the embedding rows lmrep uses
(with any embedding scale), causality, the residual stream entering block 0 and leaving every block
(``hidden_states[k]``), the final norm (``hidden_states[n]`` already has it) and the logits, that stopping the
forward early changes nothing, and the learned positions lmrep would subtract. Any mismatch is one line naming
the architecture and what failed, raised before any work starts, instead of a wrong answer later.

It runs once per model: a pass is remembered in memory and on disk (``<cache>/checks/<check_key>.json``), keyed by
a check_key of the architecture, config, dtype, library versions and a strided sample of every weight (cheap:
sixteen numbers per tensor, read from a mapped file).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .architectures import architecture, every_block, residual
from ..errors import LmrepError
from ..records.folder import write_atomic

CHECK_VERSION = 1  # bump when the check changes, so old passes are not trusted
PROBE = 6  # tokens in the probe
_PASSED: set[str] = set()


def check_key(lm) -> str:
    """Architecture, the parts lmrep found, config, dtype, device type, versions and 16 strided values of every
    tensor -> a short hash."""
    import transformers
    cfg = {k: v for k, v in lm.config.to_dict().items()
           if k not in ("_name_or_path", "name_or_path", "transformers_version")}
    names = {id(m): name for name, m in lm.model.named_modules()}
    parts = [names.get(id(m), type(m).__name__) for m in (lm.blocks, lm.final_norm, lm.position_module)]
    h = hashlib.sha256(json.dumps([CHECK_VERSION, type(lm.model).__name__, parts, transformers.__version__,
                                   torch.__version__, str(lm.dtype), lm.device.type, cfg],
                                  sort_keys=True, default=str).encode())
    for name, t in lm.model.state_dict().items():
        flat = t.detach().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}".encode())
        if flat.numel():
            h.update(flat[:: max(1, flat.numel() // 16)][:16].float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def verify(lm, cache: Path | None) -> None:
    """Run the self-check on ``lm`` (a LoadedModel) unless it passed before; raise LmrepError if it fails."""
    fp = check_key(lm)
    record = cache / "checks" / f"{fp}.json" if cache is not None else None
    if fp in _PASSED or (record is not None and record.exists()):
        _PASSED.add(fp)
        return
    with torch.no_grad():
        try:
            failure = _failure(lm)
        except LmrepError:
            raise
        except Exception as e:  # any error of the model's own code on the probe is the model's, said in one line
            failure = f"its forward pass fails on a {PROBE}-token probe ({type(e).__name__}: {_first_line(e)})"
    if failure:
        raise LmrepError(f"model '{lm.name}' ({architecture(lm.model)}): {failure}")
    _PASSED.add(fp)
    if record is not None:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(record, json.dumps(dict(model=lm.name, architecture=type(lm.model).__name__,
                                                 blocks=lm.n_layers, passed=True)))
        except OSError:  # a read-only cache only costs the check next time
            pass


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:160]


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest value (at least 1)."""
    if a.shape != b.shape:
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp(min=1)).item()


def _failure(lm) -> str | None:
    """What does not match on the probe, or None."""
    tol = 1e-10 if lm.dtype == torch.float64 else 1e-5
    V, n = lm.vocab_size, lm.n_layers
    ids = torch.tensor([[(11 + 7919 * j) % V for j in range(PROBE)]], device=lm.device)  # (1, T)
    e = lm.model.get_input_embeddings()(ids)  # the model's own embedding of the ids, (1, T, d)
    if (err := _err(lm.embed(ids), e)) > tol:
        return f"the embedding rows lmrep uses differ from the model's own embedding by {err:.2g} (an embedding " \
               "scale it does not know)"
    out = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False)
    hs = out.hidden_states
    if hs is None or len(hs) != n + 1:
        return f"it returns {0 if hs is None else len(hs)} hidden states for {n} blocks"
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % V
    if (err := _err(lm.model(input_ids=changed, use_cache=False).logits[:, :-1], out.logits[:, :-1])) > tol:
        return f"lmrep needs a causal LM, and here earlier positions' outputs change (by {err:.2g}) when a later " \
               "token changes (a bidirectional encoder?)"
    seen = every_block(lm.base, lm.blocks, e)  # n + 1 tensors
    for k in range(n):
        if (err := _err(seen[k], hs[k])) > tol:
            where = "entering block 0" if k == 0 else f"after block {k - 1}"
            return f"the residual stream {where} differs from its own hidden_states[{k}] by {err:.2g} (the blocks " \
                   f"lmrep found are not its residual stream)"
    final = lm.final_norm(seen[n])
    if (err := _err(final, hs[n])) > tol:
        return f"after the last block and the final norm lmrep found ({type(lm.final_norm).__name__}), the output " \
               f"differs from its own hidden_states[{n}] by {err:.2g} (its final norm was not found)"
    if (err := _err(lm.logits(final), out.logits)) > tol:
        return f"the LM head on the final norm's output differs from its own logits by {err:.2g}"
    for depth in sorted({0, 1, n}):
        if (err := _err(residual(lm.base, lm.blocks, depth, e), seen[depth])) > tol:
            return f"stopping its forward after {depth} blocks gives another output than the full pass (by {err:.2g})"
    pos = lm.position_embedding(PROBE)
    if pos is not None and (err := _err(e + pos, hs[0])) > tol:
        return f"the learned positions lmrep would subtract are not what it adds (off by {err:.2g})"
    return None
