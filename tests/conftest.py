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
    from lmrep.models.load import GPT2_TOKENIZER
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


SMALL_VOCAB = 384  # byte-level BPE: 256 bytes, 3 specials, the rest merges learnt from lmrep's prompts


@pytest.fixture(scope="session")
def small_tokenizer():
    """A byte-level BPE tokenizer of SMALL_VOCAB tokens learnt from the shipped prompts: any text encodes, and a
    vocabulary this small keeps exact search on tiny models to seconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from lmrep.experiments.config import PROMPTS_FILE
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SMALL_VOCAB, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(PROMPTS_FILE.read_text().splitlines(), trainer)
    assert tok.get_vocab_size() == SMALL_VOCAB
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


N = 4  # blocks: first = 1, middle = 2, last = 4
IDS = dict(vocab_size=SMALL_VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
LLAMA_LIKE = dict(num_hidden_layers=N, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, **IDS)


def tiny_configs():
    """Architecture name -> a tiny random config (4 blocks, d=32, the small tokenizer's vocabulary)."""
    import transformers as tf
    return {
        "gpt2": lambda: tf.GPT2Config(n_layer=N, n_embd=32, n_head=4, n_positions=128, **IDS),
        "llama": lambda: tf.LlamaConfig(**LLAMA_LIKE),
        "mistral": lambda: tf.MistralConfig(**LLAMA_LIKE, sliding_window=4),  # shorter than the prompts
        "qwen2": lambda: tf.Qwen2Config(**LLAMA_LIKE),
        "qwen3": lambda: tf.Qwen3Config(**LLAMA_LIKE, head_dim=8),  # q/k norms
        "gemma3": lambda: tf.Gemma3TextConfig(**LLAMA_LIKE, head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                              layer_types=["sliding_attention", "full_attention"] * 2),
        "gemma2": lambda: tf.Gemma2Config(**LLAMA_LIKE, head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                          final_logit_softcapping=3.0),  # not in the table: found by search
        "phi3": lambda: tf.Phi3Config(**LLAMA_LIKE),
        "gpt_neox": lambda: tf.GPTNeoXConfig(num_hidden_layers=N, hidden_size=32, intermediate_size=64,
                                             num_attention_heads=4, rotary_pct=0.25, use_parallel_residual=True,
                                             max_position_embeddings=128, **IDS),
        "opt": lambda: tf.OPTConfig(num_hidden_layers=N, hidden_size=32, ffn_dim=64, num_attention_heads=4,
                                    word_embed_proj_dim=32, max_position_embeddings=128, **IDS),
        "opt-projected": lambda: tf.OPTConfig(num_hidden_layers=N, hidden_size=32, ffn_dim=64, num_attention_heads=4,
                                              word_embed_proj_dim=16, do_layer_norm_before=False,
                                              max_position_embeddings=128, **IDS),  # OPT-350m's shape
        "falcon": lambda: tf.FalconConfig(num_hidden_layers=N, hidden_size=32, num_attention_heads=4, **IDS),
        "gptj": lambda: tf.GPTJConfig(n_layer=N, n_embd=32, n_head=4, rotary_dim=4, n_positions=128, **IDS),
    }




@pytest.fixture(scope="session")
def arch_dirs(tmp_path_factory, small_tokenizer):
    """Architecture name -> a folder with a tiny random model and the small tokenizer (built on first use)."""
    from transformers import AutoModelForCausalLM
    made = {}

    def folder(arch: str):
        if arch not in made:
            path = tmp_path_factory.mktemp(f"tiny-{arch}")
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(tiny_configs()[arch]()).save_pretrained(path)
            small_tokenizer.save_pretrained(path)
            made[arch] = path
        return made[arch]
    return folder


@pytest.fixture(scope="session")
def arch_models(arch_dirs):
    loaded = {}

    def model(arch: str):
        if arch not in loaded:
            from lmrep import load_model
            loaded[arch] = load_model(str(arch_dirs(arch)))
        return loaded[arch]
    return model
