"""Captured layer outputs in a file: what an observer holds, and what ``lmrep invert --states`` starts from.

A states file is safetensors: one (T, D) tensor per prompt under keys "0", "1", ..., and in its header what made
them: the model's name and a hash of its weights (``models.load.weights_hash``), the layer (name, depth, head), the
dtype the states are stored in, the noise added, and the token ids as JSON (so a later inversion can be scored;
left out with ``ids=False``). Plain ``.npy`` arrays of shape (T, D) or (N, T, D) are read too, without metadata;
so is any safetensors file of (T, D) or (N, T, D) tensors, e.g. hidden states that transformers returned and
``safetensors.torch.save_file`` wrote, and of a key/value cache as transformers keeps it, (N, heads, T, head_dim).

Noise (``sigma``) is Gaussian relative to each position's scale (its root mean square), so that one sigma means the
same at every position and layer.

Quantised states (lmrep.inversion.degrade) keep the stored values under their key (integer codes for int8, int4 and
int2, float8 for fp8), their float scales under ``<key>.scale`` and, if quantised with zero points, those under
``<key>.zero`` (lmrep.inversion.quantised); the header says ``quant`` (int8, int4, int2, fp8_e4m3, fp8_e5m2) and
``quant_group``. Reading dequantises them and keeps each value's rounding bound, and a header with ``noise`` gives
each position's noise scale: the exact method then tests candidates against that bound.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..engine import TENSOR_FIELD, Job, MemoryLog, Task, run_here
from ..errors import LmrepError
from ..models.layers import LayerModel
from ..models.load import weights_hash
from ..objective.batching import prompt_generator
from ..records.folder import write_atomic
from ..records.inputs import check_states_file, shown
from .degrade import Degraded, Quantisation, noise_sigma
from .formats import STORED
from .quantised import dequantised, quantise

FORMAT = "lmrep-states/1"
STORE_DTYPES = {name: getattr(torch, name) for name in STORED}


@dataclass
class States:
    """Observed layer outputs: ``tensors`` (T_i, D) under ``keys``, what the file says about them (``meta``),
    and the token ids of each if it has them."""
    keys: list[str]
    tensors: list[torch.Tensor]
    meta: dict = field(default_factory=dict)
    ids: list[list[int]] | None = None
    digest: str = ""  # of the file's bytes: what a run folder keys on
    bounds: list[torch.Tensor] | None = None  # (T_i, D) per tensor: each value's rounding bound, if quantised

    def observed(self, i: int):
        """Tensor i as the methods take it: a Degraded with its bound when the file says it was quantised or
        noised, else the tensor."""
        noise = float(self.meta.get("noise", 0) or 0)
        zero = " with zero points" if self.meta.get("quant_zero") == "true" else ""
        about = ", ".join(x for x in (self.meta.get("quant", "") and
                                      f"{self.meta['quant']} (scale per {self.meta.get('quant_group', '?')}{zero})",
                                      noise and f"noise {noise:g} x RMS") if x)
        if self.bounds is not None:
            return Degraded(self.tensors[i], bound=self.bounds[i], about=about)
        if noise:
            return Degraded(self.tensors[i], sigma=noise_sigma(self.tensors[i], noise), about=about)
        return self.tensors[i]

    def select(self, wanted: list[str]) -> "States":
        """Only the tensors under ``wanted``, in that order; one line naming what the file has if one is missing."""
        missing = [k for k in wanted if k not in self.keys]
        if missing:
            has = ", ".join(map(shown, self.keys[:8])) + (", ..." if len(self.keys) > 8 else "")
            raise LmrepError(f"key {shown(missing[0])} is not in the states file: it has {has}")
        at = [self.keys.index(k) for k in wanted]
        return States([self.keys[i] for i in at], [self.tensors[i] for i in at], self.meta,
                      None if self.ids is None else [self.ids[i] for i in at], self.digest,
                      None if self.bounds is None else [self.bounds[i] for i in at])


@torch.no_grad()
def capture(target: LayerModel, ids: list[list[int]], dtype: torch.dtype = torch.float32, noise: float = 0.0,
            seed: int = 0) -> list[torch.Tensor]:
    """Each prompt's layer output alone, (T_i, D), with noise of ``noise`` times each position's RMS, stored in
    ``dtype`` (rounded to nearest after the model's own dtype)."""
    lm, out = target.lm, []
    for x in ids:
        h = target(lm.embed(torch.tensor([x], device=lm.device)))[0]  # (T, D)
        if noise:
            g = prompt_generator(seed, x, h.device)  # the prompt's own noise, as every method draws it
            rms = h.pow(2).mean(-1, keepdim=True).sqrt()  # (T, 1)
            h = h + noise * rms * torch.randn(h.shape, generator=g, device=h.device, dtype=h.dtype)
        out.append(h.to(dtype).cpu().contiguous())
    return out


def solve_capture(pool, ids: list[list[int]], target: LayerModel, dtype: torch.dtype, noise: float,
                  seed: int) -> Iterator[dict]:
    """One task: the prompts' layer outputs (``capture``), each record carrying its state (T, D)."""
    for x, h in zip(ids, capture(target, ids, dtype, noise, seed)):
        yield {"n_tokens": len(x), TENSOR_FIELD: dict(state=h)}


def capture_file(path: str | Path, target: LayerModel, ids: list[list[int]], dtype: torch.dtype = torch.float32,
                 noise: float = 0.0, seed: int = 0, keep_ids: bool = True, progress: bool = False,
                 quant: Quantisation | None = None) -> list[torch.Tensor]:
    """Capture every prompt as an item of the engine (a task per prompt, run here) and write the states file whole
    at the end: the file is what an observer holds, one tensor per prompt, so it is never left half written and
    there is nothing to resume (a capture is one forward pass per prompt). ``quant``: store them quantised (the
    scales beside them). Returns the tensors as captured (before any quantisation)."""
    log, keys = MemoryLog(), [str(i) for i in range(len(ids))]
    tasks = [Task(solve_capture, (target, dtype, noise, seed), (k,), (x,)) for k, x in zip(keys, ids)]
    run_here(Job("capture", log, iter([tasks])), progress, "prompts")
    tensors = [log.tensors[f"{k}/state"] for k in keys]
    meta = header(target, dtype, noise, ids if keep_ids else None, quant)
    save(path, quantise(tensors, quant) if quant else tensors, meta)
    return tensors


def header(target: LayerModel, dtype: torch.dtype, noise: float, ids: list[list[int]] | None,
           quant: Quantisation | None = None) -> dict:
    """What a states file's header says, as the strings safetensors keeps."""
    lm, spec = target.lm, target.spec
    meta = dict(format=FORMAT, model=lm.name, trained=json.dumps(lm.trained), fingerprint=weights_hash(lm),
                layer_name=target.name, layer=str(spec.depth), head=spec.head,
                dtype=str(dtype).replace("torch.", ""), model_dtype=str(lm.dtype).replace("torch.", ""),
                noise=repr(float(noise)))
    if ids is not None:
        meta["ids"] = json.dumps(ids)
    if quant is not None:
        meta.update(quant=quant.kind, quant_group=quant.group, dtype="float32")
        if quant.zero:
            meta["quant_zero"] = "true"
    return meta


def save(path: str | Path, tensors: list[torch.Tensor] | dict[str, torch.Tensor], meta: dict) -> Path:
    """Write the states file whole (a temporary file, then a rename): tensors under keys 0, 1, ... (or as named)."""
    from safetensors.torch import save as to_bytes
    named = tensors if isinstance(tensors, dict) else {str(i): t for i, t in enumerate(tensors)}
    return write_atomic(path, to_bytes({k: t.contiguous() for k, t in named.items()}, metadata=meta))


def load(path: str | Path) -> States:
    """A states file (safetensors, or .npy of (T, D) or (N, T, D)); one line for a missing, unreadable or non-tensor
    file, and for tensors that are not floating-point (T, D) or (N, T, D)."""
    path = check_states_file(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LmrepError(f"cannot read states file '{path}': {e.strerror}") from None
    if not data:
        raise LmrepError(f"states file '{path}' is empty (0 bytes): give a .safetensors or .npy file")
    digest = hashlib.sha256(data).hexdigest()[:16]
    bounds = None
    if path.suffix == ".npy" or data[:6] == b"\x93NUMPY":
        keys, tensors, meta = _npy(path, data)
    else:
        keys, tensors, meta, bounds = _safetensors(path, data)
    if not keys:
        raise LmrepError(f"states file '{path}' holds no tensor")
    ids = _ids(path, meta, tensors)
    return States(keys, tensors, meta, ids, digest, bounds)


def _npy(path: Path, data: bytes):
    import numpy as np
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise LmrepError(f"states file '{path}' is not a readable .npy array ({str(e)[:80]})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive (a zip of arrays)
        raise LmrepError(f"states file '{path}' is an .npz archive, not one array: save each as .npy, or all in one "
                         "safetensors file")
    if not np.issubdtype(arr.dtype, np.floating):
        raise LmrepError(f"states file '{path}' holds {arr.dtype} values: give floating-point states")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    keys, tensors = _split(path, {"0": t} if t.dim() == 2 else {"": t})
    return keys, tensors, {}


def _safetensors(path: Path, data: bytes):
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes
    try:
        tensors = from_bytes(data)
        meta = _header_metadata(data)
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError) as e:
        raise LmrepError(f"states file '{path}' is not a tensor file (safetensors or .npy): "
                         f"{str(e).splitlines()[0][:80] if str(e) else type(e).__name__}") from None
    tensors, bounds = dequantised(path, tensors, meta)
    keys, split = _split(path, tensors)
    if bounds is not None:
        bounds = _split(path, bounds)[1]
    return keys, split, meta, bounds


def _header_metadata(data: bytes) -> dict:
    """The free-form metadata of a safetensors header ({} if it has none)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def _order(key: str):
    return (0, int(key), "") if re.fullmatch(r"\d+", key) else (1, 0, key)


def _split(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
    """Keys in order (numbers by value, then names) and one (T, D) tensor each: an (N, T, D) tensor under key k
    becomes k.0, k.1, ... (or 0, 1, ... for a nameless one), and so does a key/value cache's (N, heads, T, head_dim),
    its heads side by side as the cache layers give them (T, heads * head_dim)."""
    keys, out = [], []
    for k in sorted(tensors, key=_order):
        t = tensors[k]
        if not t.is_floating_point():
            raise LmrepError(f"states file '{path}': tensor {shown(k)} holds {str(t.dtype).replace('torch.', '')} "
                             "values: give floating-point states")
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise LmrepError(f"states file '{path}': tensor {shown(k or '0')} holds {bad} NaN or infinite values: "
                             "states are finite numbers")
        if t.dim() == 2 and t.shape[0] >= 1:
            keys.append(k)
            out.append(t)
        elif t.dim() in (3, 4) and t.shape[-2 if t.dim() == 4 else 1] >= 1:
            if t.dim() == 4:  # a key/value cache as transformers keeps it: (N, heads, T, head_dim), heads side by side
                t = t.transpose(1, 2).flatten(2)
            keys += [f"{k}.{i}" if k else str(i) for i in range(t.shape[0])]
            out += list(t)
        else:
            raise LmrepError(f"states file '{path}': tensor {shown(k or '0')} has shape {tuple(t.shape)}; give (T, D) "
                             "or (N, T, D) tensors, or a key/value cache's (N, heads, T, head_dim)")
    return keys, out


def _ids(path: Path, meta: dict, tensors: list[torch.Tensor]) -> list[list[int]] | None:
    if "ids" not in meta:
        return None
    try:
        ids = json.loads(meta["ids"])
        ok = len(ids) == len(tensors) and all(len(x) == len(t) and all(isinstance(i, int) and i >= 0 for i in x)
                                              for x, t in zip(ids, tensors))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise LmrepError(f"states file '{path}': its token ids do not match its tensors (one list of T ids per "
                         "tensor): rewrite it, or drop the ids")
    return ids


def check_made_by(states: States, lm, path: str | Path) -> None:
    """The file was made by these weights (when it says), and its positions fit the model's context."""
    want = states.meta.get("fingerprint")
    if want and want != weights_hash(lm):
        made = shown(states.meta.get("model", "another model"))
        raise LmrepError(f"states file '{path}' was captured from {made} (weights {shown(want)}), not from {lm.name} "
                         f"(weights {weights_hash(lm)}): pass the model that made it")
    longest = max(len(t) for t in states.tensors)
    if longest > lm.max_positions:
        raise LmrepError(f"states file '{path}' has {longest} positions but {lm.name} takes at most "
                         f"{lm.max_positions}")
    if states.ids is not None and max(max(x) for x in states.ids) >= lm.vocab_size:
        raise LmrepError(f"states file '{path}' has token ids beyond {lm.name}'s vocabulary of {lm.vocab_size}")


def check_width(states: States, width: int, layer_name: str, path: str | Path) -> None:
    """Every tensor's width D is what the layer outputs."""
    for k, t in zip(states.keys, states.tensors):
        if t.shape[1] != width:
            raise LmrepError(f"states file '{path}': tensor '{k}' has shape {tuple(t.shape)} but {layer_name} "
                             f"outputs width {width}: pass the layer (and --head) that made it")
