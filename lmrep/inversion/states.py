"""Captured layer outputs in a file: what an observer holds, and what ``lmrep invert --states`` starts from.

A states file is safetensors: one (T, D) tensor per prompt under keys "0", "1", ..., and in its header what made
them: the model's name and a fingerprint of its weights (``models.fingerprint``), the layer (name, depth, head), the
dtype the states are stored in, the noise added, and the token ids as JSON (so a later inversion can be scored;
left out with ``ids=False``). Plain ``.npy`` arrays of shape (T, D) or (N, T, D) are read too, without metadata;
so is any safetensors file of (T, D) or (N, T, D) tensors, e.g. hidden states that transformers returned and
``safetensors.torch.save_file`` wrote.

Noise (``sigma``) is Gaussian relative to each position's scale (its root mean square), so that one sigma means the
same at every position and layer.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..objective.batching import prompt_generator
from ..errors import LmrepError
from ..models.layers import LayerModel
from ..models.load import fingerprint
from ..records.folder import write_atomic
from ..records.inputs import shown

FORMAT = "lmrep-states/1"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class States:
    """Observed layer outputs: ``tensors`` (T_i, D) under ``keys``, what the file says about them (``meta``),
    and the token ids of each if it has them."""
    keys: list[str]
    tensors: list[torch.Tensor]
    meta: dict = field(default_factory=dict)
    ids: list[list[int]] | None = None
    digest: str = ""  # of the file's bytes: what a run folder keys on

    def select(self, wanted: list[str]) -> "States":
        """Only the tensors under ``wanted``, in that order; one line naming what the file has if one is missing."""
        missing = [k for k in wanted if k not in self.keys]
        if missing:
            has = ", ".join(map(shown, self.keys[:8])) + (", ..." if len(self.keys) > 8 else "")
            raise LmrepError(f"key {shown(missing[0])} is not in the states file: it has {has}")
        at = [self.keys.index(k) for k in wanted]
        return States([self.keys[i] for i in at], [self.tensors[i] for i in at], self.meta,
                      None if self.ids is None else [self.ids[i] for i in at], self.digest)


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


def header(target: LayerModel, dtype: torch.dtype, noise: float, ids: list[list[int]] | None) -> dict:
    """What a states file's header says, as the strings safetensors keeps."""
    lm, spec = target.lm, target.spec
    meta = dict(format=FORMAT, model=lm.name, trained=json.dumps(lm.trained), fingerprint=fingerprint(lm),
                layer_name=target.name, layer=str(spec.depth), head=spec.head,
                dtype=str(dtype).replace("torch.", ""), model_dtype=str(lm.dtype).replace("torch.", ""),
                noise=repr(float(noise)))
    if ids is not None:
        meta["ids"] = json.dumps(ids)
    return meta


def save(path: str | Path, tensors: list[torch.Tensor], meta: dict) -> Path:
    """Write the states file whole (a temporary file, then a rename)."""
    from safetensors.torch import save as to_bytes
    return write_atomic(path, to_bytes({str(i): t.contiguous() for i, t in enumerate(tensors)}, metadata=meta))


def load(path: str | Path) -> States:
    """A states file (safetensors, or .npy of (T, D) or (N, T, D)); one line for a missing, unreadable or non-tensor
    file, and for tensors that are not floating-point (T, D) or (N, T, D)."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "not found"
        raise LmrepError(f"states file {shown(str(path))} {what}: give a .safetensors or .npy file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LmrepError(f"cannot read states file '{path}': {e.strerror}") from None
    if not data:
        raise LmrepError(f"states file '{path}' is empty (0 bytes): give a .safetensors or .npy file")
    digest = hashlib.sha256(data).hexdigest()[:16]
    if path.suffix == ".npy" or data[:6] == b"\x93NUMPY":
        keys, tensors, meta = _npy(path, data)
    else:
        keys, tensors, meta = _safetensors(path, data)
    if not keys:
        raise LmrepError(f"states file '{path}' holds no tensor")
    ids = _ids(path, meta, tensors)
    return States(keys, tensors, meta, ids, digest)


def _npy(path: Path, data: bytes):
    import numpy as np
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise LmrepError(f"states file '{path}' is not a readable .npy array ({str(e)[:80]})") from None
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
    keys, split = _split(path, tensors)
    return keys, split, meta


def _header_metadata(data: bytes) -> dict:
    """The free-form metadata of a safetensors header ({} if it has none)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def _order(key: str):
    return (0, int(key), "") if re.fullmatch(r"\d+", key) else (1, 0, key)


def _split(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
    """Keys in order (numbers by value, then names) and one (T, D) tensor each: an (N, T, D) tensor under key k
    becomes k.0, k.1, ... (or 0, 1, ... for a nameless one)."""
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
        elif t.dim() == 3 and t.shape[1] >= 1:
            keys += [f"{k}.{i}" if k else str(i) for i in range(t.shape[0])]
            out += list(t)
        else:
            raise LmrepError(f"states file '{path}': tensor {shown(k or '0')} has shape {tuple(t.shape)}; give (T, D) "
                             "or (N, T, D) tensors")
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


def check_model(states: States, lm, path: str | Path) -> None:
    """The file was made by these weights (when it says), and its positions fit the model's context."""
    want = states.meta.get("fingerprint")
    if want and want != fingerprint(lm):
        made = shown(states.meta.get("model", "another model"))
        raise LmrepError(f"states file '{path}' was captured from {made} (weights {shown(want)}), not from {lm.name} "
                         f"(weights {fingerprint(lm)}): pass the model that made it")
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
