"""Loading a transformers causal LM from a hub name or a folder, and the folders lmrep converts itself.

Every failure is one line that says what to do (lmrep.errors.LmrepError): a name that cannot be a model, a file
where a folder belongs, a broken folder (whatever transformers trips on), an encoder-decoder or a model type with
no causal-LM class (before any weights load), a hub model that is not cached while offline.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import LmrepError


def seeded(make, seed: int):
    """Random weights drawn under ``seed`` without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def load_converted(folder: Path, untrained: bool, seed: int):
    """A folder that lmrep.models.gguf wrote. Its tokenizer loads straight from tokenizer.json: the same tokens as
    AutoTokenizer (checked on the prompts), without rebuilding a 262k-token vocabulary in Python (4 s, not 11 s)."""
    import json
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
    if untrained:
        model = seeded(lambda: AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)), seed)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    special = {k: v for k, v in json.loads((folder / "tokenizer_config.json").read_text()).items()
               if k.endswith("_token") and isinstance(v, str)}
    return model, PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)


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


def load_hf(source: str, untrained: bool, seed: int, trust_remote_code: bool, spec: str, known=()):
    """A hub name or a folder -> (model, tokenizer); every failure is one line that says what to do."""
    folder = Path(source).exists()
    if not folder and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise LmrepError(f"unknown model '{spec}': use one of {', '.join(known)}, a hub name or a local folder "
                         "(see lmrep models)")
    if folder and folder_problem(source):
        raise LmrepError(folder_problem(source))
    try:
        return _from_pretrained(source, untrained, seed, trust_remote_code, spec, local_only=folder)
    except LmrepError:
        raise
    except Exception as e:  # a folder's files are the user's: whatever transformers trips on, say it in one line
        if folder:
            raise LmrepError(f"cannot load the model folder '{spec}' ({type(e).__name__}: {_first_line(e)}); it "
                             "needs config.json, the weights (model.safetensors) and the tokenizer files, as "
                             "save_pretrained writes them") from None
        if not isinstance(e, (OSError, ValueError)):
            raise
        raise LmrepError(f"cannot load model '{spec}' ({_first_line(e)}): it is not in the local Hugging Face "
                         "cache and the hub cannot be reached; download it where there is internet "
                         f"(hf download {source}) or pass a local folder") from None


def _from_pretrained(source: str, untrained: bool, seed: int, trust_remote_code: bool, spec: str,
                     local_only: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    kw = dict(trust_remote_code=trust_remote_code)
    try:  # the local cache first: no network wait for what is already here
        config = AutoConfig.from_pretrained(source, local_files_only=True, **kw)
        local = True
    except OSError:
        if local_only or not hub_reachable():
            raise  # offline: one line at once, not a minute of retries
        config = AutoConfig.from_pretrained(source, **kw)
        local = False
    _check_causal(config, spec, trust_remote_code)
    if untrained:
        model = seeded(lambda: AutoModelForCausalLM.from_config(config, **kw), seed)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local, dtype=torch.float32, **kw)
    return model, AutoTokenizer.from_pretrained(source, local_files_only=local, **kw)


def _check_causal(config, spec: str, trust_remote_code: bool) -> None:
    """Before any weights load: an encoder-decoder, or a model type with no causal-LM class, is not for lmrep
    (a bidirectional encoder that has one, such as BERT's LM head, is caught by the self-check)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    model_type = getattr(config, "model_type", "?")
    remote = trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if getattr(config, "is_encoder_decoder", False):
        raise LmrepError(f"model '{spec}' (model type '{model_type}') is an encoder-decoder; lmrep needs a causal LM "
                         "(decoder-only, such as GPT-2, Llama, Qwen, Gemma)")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not remote:
        raise LmrepError(f"model '{spec}' (model type '{model_type}') has no causal-LM class in transformers; lmrep "
                         "needs a causal LM (decoder-only, such as GPT-2, Llama, Qwen, Gemma)")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers at all (False at once when offline mode is set): asked before any
    download, so that a model that is not cached fails in one line instead of after retries."""
    import os
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def in_hf_cache(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # any failure of the look-up just means "not known to be cached"
        return False
