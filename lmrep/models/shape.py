"""A model's shape read from its config file, without its weights: what a sweep spec is checked against before
anything runs (how many blocks there are to name)."""
from __future__ import annotations

from .gguf import converted
from .load import KNOWN, cache_dir, check_loadable


def model_config(spec: str, untrained: bool = False):
    """The transformers config of a model lmrep can load (checked first: models.load.check_loadable), read from its
    config file alone: the untrained GPT-2's is built, a known GGUF model's is its cached conversion's (converted
    once if it is not there yet, as its first run would), a folder's or hub name's is its config.json."""
    from transformers import AutoConfig, GPT2Config
    check_loadable(spec, untrained)
    if spec == "gpt2" and untrained:
        return GPT2Config()
    known = KNOWN.get(spec)
    if known is not None and known.gguf is not None:
        return AutoConfig.from_pretrained(converted(cache_dir() / spec, known.gguf, spec))
    source = known.hub_id if known else spec
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError:
        return AutoConfig.from_pretrained(source)


def n_blocks(spec: str, untrained: bool = False) -> int:
    """How many blocks the model has (its layers are 0..n_blocks), from its config file."""
    config = model_config(spec, untrained)
    config = getattr(config, "text_config", None) or config  # a multimodal config holds its language model's
    return int(config.num_hidden_layers)
