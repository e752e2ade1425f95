"""Shared fixtures: tiny GPT-2- and Llama-style models saved to a folder and loaded by path (the local-folder
path of load_model), the untrained GPT-2 and the trained default model. Everything offline, on CPU."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait on a network that is not there
torch.set_num_threads(min(2, torch.get_num_threads()))


def _save_tiny(folder, config):
    from transformers import AutoModelForCausalLM, GPT2TokenizerFast
    from lmrep.models import GPT2_TOKENIZER
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config
    return _save_tiny(tmp_path_factory.mktemp("tiny-gpt2"),
                      GPT2Config(n_layer=3, n_embd=64, n_head=4, n_positions=64, vocab_size=50257))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from transformers import LlamaConfig
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"),
                      LlamaConfig(num_hidden_layers=3, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=64, vocab_size=50257))


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    from lmrep import load_model
    return load_model(str(tiny_gpt2_dir))


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from lmrep import load_model
    return load_model(str(tiny_llama_dir))


@pytest.fixture(scope="session")
def gpt2_untrained():
    from lmrep import load_model
    return load_model("gpt2", untrained=True)


@pytest.fixture(scope="session")
def smol():
    from lmrep import load_model
    return load_model("smollm2-135m")
