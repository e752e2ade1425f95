"""Shared fixtures: tiny GPT-2- and Llama-style models saved to a folder and loaded by path (the local-folder
path of load_model), the untrained GPT-2 and the trained default model. Everything offline, on CPU."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait on a network that is not there
# under pytest-xdist each of the two workers takes one core; alone, the suite takes two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

# fixtures that hold a real-size model or a whole experiment's runs: a test that uses one is marked slow
SLOW_FIXTURES = {"smol", "gemma", "gpt2_untrained", "quick_run", "reference"}


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=0, metavar="N",
                     help="list the N tests that took the most CPU time (this process and the children it waited "
                          "for): on a shared machine, wall times say more about the neighbours than the test")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = _cpu()
    yield
    item.config._cpu_seconds = getattr(item.config, "_cpu_seconds", {})
    item.config._cpu_seconds[item.nodeid] = _cpu() - start


def pytest_terminal_summary(terminalreporter, config):
    n, seconds = config.getoption("--cpu-durations"), getattr(config, "_cpu_seconds", {})
    if n and seconds:
        terminalreporter.section(f"most CPU time: {n} of {len(seconds)} tests, {sum(seconds.values()):.0f} s in all")
        for nodeid, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:n]:
            terminalreporter.write_line(f"{s:8.2f}s cpu  {nodeid}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


DERIVED = ("exact", "tables", "checks")  # what lmrep computes from weights: calibration maps, tables, self-checks


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """LMREP_CACHE in this session's temp folder (shared by the xdist workers of one run): calibration maps,
    vocabulary tables and self-check records are built once per run of the suite, as on a clean clone, and the
    user's cache is not touched. The converted weights (minutes to make) are the user's, linked in; a model
    converted during the session is moved to the user's cache at its end."""
    from lmrep.models.load import cache_dir
    user = cache_dir()
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lmrep-cache"
    cache.mkdir(exist_ok=True)
    linked = set()
    for entry in user.iterdir() if user.is_dir() else ():
        if entry.name not in DERIVED and not entry.name.startswith(".") and ".partial-" not in entry.name:
            linked.add(entry.name)
            try:
                (cache / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
            except FileExistsError:  # the other worker linked it
                pass
    before = os.environ.get("LMREP_CACHE")
    os.environ["LMREP_CACHE"] = str(cache)
    yield Path(cache)
    if before is None:
        os.environ.pop("LMREP_CACHE")
    else:
        os.environ["LMREP_CACHE"] = before
    for entry in cache.iterdir():
        if entry.name not in DERIVED and entry.name not in linked and not entry.is_symlink() \
                and ".partial-" not in entry.name and not (user / entry.name).exists():
            user.mkdir(parents=True, exist_ok=True)
            shutil.move(str(entry), str(user / entry.name))


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
