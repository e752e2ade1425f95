"""Unsupported is a clear error, not a wrong answer: the first self-check names the architecture and what failed;
a pass is remembered (in memory and on disk); an encoder, an encoder-decoder and a broken folder each give one
line and exit code 2."""
from __future__ import annotations

import json

import pytest
import torch

from lmrep import LmrepError, load_model
from lmrep.models import architectures, selfcheck
from lmrep.cli import main


@pytest.fixture
def fresh_checks(monkeypatch, tmp_path):
    """No pass remembered, in memory or on disk (an empty cache folder), for this test."""
    monkeypatch.setattr(selfcheck, "_PASSED", set())
    monkeypatch.setenv("LMREP_CACHE", str(tmp_path / "cache"))


def _one_line_exit_2(args, capsys, *needles):
    capsys.readouterr()  # what building the folder printed
    assert main(["invert", "The sky is blue.", "--steps", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_final_norm_that_is_not_found_is_an_error(arch_dirs, monkeypatch, fresh_checks):
    """GPT-NeoX's final norm is `final_layer_norm`; an anatomy that misses it used to give logits off by 0.13."""
    wrong = architectures.Anatomy("layers", ("norm",))  # no such module: nothing would follow the blocks
    monkeypatch.setitem(architectures.ANATOMY, "gpt_neox", wrong)
    with pytest.raises(LmrepError, match=r"GPTNeoXForCausalLM.*final norm") as e:
        load_model(str(arch_dirs("gpt_neox")))
    assert "\n" not in str(e.value) and "hidden_states[4]" in str(e.value)


def test_blocks_that_are_not_the_residual_stream_are_an_error(arch_dirs, monkeypatch, fresh_checks):
    from torch import nn
    real = architectures.find_parts

    def shuffled(model, label):
        parts = real(model, label)
        parts.blocks = nn.ModuleList(list(parts.blocks)[::-1])  # the right modules in the wrong order
        return parts
    monkeypatch.setattr("lmrep.models.load.find_parts", shuffled)
    with pytest.raises(LmrepError, match=r"LlamaForCausalLM.*residual stream entering block 0 differs"):
        load_model(str(arch_dirs("llama")))


def test_learned_positions_at_the_wrong_offset_are_an_error(arch_dirs, monkeypatch, fresh_checks):
    monkeypatch.setattr(architectures.Parts, "position_rows", lambda self, T: self.positions.weight[:T])
    with pytest.raises(LmrepError, match=r"OPTForCausalLM.*learned positions"):
        load_model(str(arch_dirs("opt")))  # OPT's rows start at 2


def test_a_pass_is_remembered_on_disk(arch_dirs, tmp_path, monkeypatch, fresh_checks):
    lm = load_model(str(arch_dirs("qwen3")))
    (record,) = (tmp_path / "cache" / "checks").glob("*.json")
    assert json.loads(record.read_text())["passed"] and record.stem == selfcheck.check_key(lm)
    monkeypatch.setattr(selfcheck, "_PASSED", set())
    monkeypatch.setattr(selfcheck, "_failure", lambda lm: pytest.fail("checked twice"))
    load_model(str(arch_dirs("qwen3")))  # found on disk: not run again
    assert selfcheck.check_key(lm.to(dtype=torch.float64)) != record.stem  # another dtype is another check


def test_check_key_sees_the_weights(arch_dirs):
    a, b = load_model(str(arch_dirs("llama"))), load_model(str(arch_dirs("llama")))
    assert selfcheck.check_key(a) == selfcheck.check_key(b)
    with torch.no_grad():
        b.blocks[1].mlp.down_proj.weight.mul_(1.5)
    assert selfcheck.check_key(a) != selfcheck.check_key(b)


def test_a_bidirectional_encoder_needs_a_causal_lm(tmp_path, small_tokenizer, capsys, fresh_checks):
    from transformers import AutoModelForCausalLM, BertConfig
    from conftest import SMALL_VOCAB
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=SMALL_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)  # BertLMHeadModel, but not a decoder
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    small_tokenizer.save_pretrained(tmp_path)
    _one_line_exit_2(["--model", str(tmp_path)], capsys, "BertLMHeadModel", "needs a causal LM")


def test_an_encoder_decoder_needs_a_causal_lm(tmp_path, capsys):
    from transformers import T5Config
    T5Config(d_model=32, num_layers=2, num_heads=4, d_ff=64).save_pretrained(tmp_path)  # refused before weights
    _one_line_exit_2(["--model", str(tmp_path)], capsys, "encoder-decoder", "needs a causal LM")


def test_an_encoder_without_a_causal_class_needs_a_causal_lm(tmp_path, capsys):
    from transformers import DistilBertConfig
    DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64).save_pretrained(tmp_path)
    _one_line_exit_2(["--model", str(tmp_path)], capsys, "distilbert", "needs a causal LM")


@pytest.mark.parametrize("damage", ["no weights", "bad config", "empty", "truncated weights", "a file"])
def test_a_broken_model_folder_is_one_line(damage, arch_dirs, tmp_path, capsys):
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(arch_dirs("llama"), folder)
    if damage == "no weights":
        (folder / "model.safetensors").unlink()
    elif damage == "bad config":
        (folder / "config.json").write_text("{not json")
    elif damage == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    elif damage == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    else:
        folder = folder / "config.json"
    err = _one_line_exit_2(["--model", str(folder)], capsys, str(folder))
    expected = {"a file": "is a file", "empty": "no config.json"}.get(damage, "cannot load the model folder")
    assert expected in err, err
