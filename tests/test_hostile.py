"""Hostile input, by class: a spec that reaches outside its folder, numbers past any feasible range, text that is not
text, devices this machine lacks, states files that hold no states, report folders whose records hold less than
their summary, names that would be Markdown. Each gets one line and exit code 2 before anything is written."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lmrep.cli import main


def _refused(argv, capsys, *words) -> str:
    """main(argv) exits 2 with one line holding ``words``."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# ---- specs cannot reach outside their folder ----------------------------------------------------------------------

GRID = "[grid]\nmodels = [{{name = 'gpt2', untrained = true}}]\nprompts = ['a b']\n{}\n"


@pytest.mark.parametrize("extra,words", [
    ("name = '../../x'", ["plain folder name"]),
    ("name = '/tmp/abs'", ["plain folder name"]),
    ("name = '.lmrep.lock'", ["plain folder name"]),
    ('name = "a\\u001b[31m"', ["plain folder name", "\\x1b"]),
    ("name = ''", ["1 to 100 characters"]),
    ("prompts_file = '../outside.txt'", ["outside the spec's folder", "--allow"]),
    ("prompts_file = '/etc/hostname'", ["outside the spec's folder"]),
    ("seeds = 99999999999999999", ["count of 1 to 10000"]),
    ("seeds = [-1]", ["seeds 0..4294967295"]),
    ("steps = 1000000000000", ["up to 10000000"]),
])
def test_a_spec_reaching_outside_or_past_its_range_is_refused_before_any_work(tmp_path, capsys, extra, words):
    (tmp_path / "outside.txt").write_text("secret line\n")
    spec = tmp_path / "specs" / "s.toml"
    spec.parent.mkdir()
    spec.write_text(GRID.format(extra))
    _refused(["sweep", spec, "--out", tmp_path / "out"], capsys, *words)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("top,words", [("out = '/tmp/elsewhere'", ["relative folder"]), ("out = '../up'", ["'..'"]),
                                       ("device = 'meta'", ["unknown device 'meta'"])])
def test_a_spec_cannot_write_elsewhere_or_pick_a_device_this_machine_lacks(tmp_path, capsys, top, words):
    spec = tmp_path / "s.toml"
    spec.write_text(top + "\n" + GRID.format(""))
    _refused(["sweep", spec], capsys, *words)
    assert not (tmp_path.parent / "up").exists()


def test_the_command_line_may_allow_an_outside_file_and_a_spec_cannot(tmp_path):
    from lmrep.errors import LmrepError
    from lmrep.experiments.sweep import load_spec
    outside = tmp_path / "outside.txt"
    outside.write_text("from outside\n")
    spec = tmp_path / "specs" / "s.toml"
    spec.parent.mkdir()
    spec.write_text(GRID.format("prompts_file = '../outside.txt'\nallow = ['../outside.txt']"))
    with pytest.raises(LmrepError, match="unknown key 'grid.allow'"):
        load_spec(spec)
    spec.write_text(GRID.format("prompts_file = '../outside.txt'"))
    (_, grid), = load_spec(spec, tmp_path / "out", allow=(str(outside),)).runs
    assert grid.prompts == ["a b", "from outside"]


# ---- numbers, text, devices, --out -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv,words", [
    (["invert", "hi", "--steps", "99999999999999999999999"], ["up to 10000000"]),
    (["invert", "hi", "--steps", "1000000000000"], ["up to 10000000"]),
    (["walk", "hi", "--krylov", "99999999999999999999"], ["up to 10000000"]),
    (["invert", "a\udcffb"], ["not valid UTF-8", "0xff"]),
    (["invert", "hi", "--model", "\udcfe"], ["not valid UTF-8"]),
    (["invert", "red \x1b[31m"], ["control character \\x1b"]),
    (["capture", "hi\x07", "--layer", "1", "--out", "s.safetensors"], ["control character \\x07"]),
    (["invert", "hi", "--device", "mps"], ["--device", "cpu, cuda, cuda:N or auto"]),
    (["invert", "hi", "--device", "meta"], ["--device"]),
    (["invert", "hi", "--device", "bogus"], ["--device"]),
    (["sweep", "s.toml", "--device", "bogus"], ["--device"]),
    (["reproduce", "depth", "--device", "meta"], ["--device"]),
    (["invert", "hi", "--out", ""], ["is empty"]),
    (["report", "x", "--combined", ""], ["is empty"]),
    (["report", "x", "--html", ""], ["is empty"]),
])
def test_refused_while_reading_the_arguments(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    _refused(argv, capsys, *words)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even runs/


@pytest.mark.slow
def test_krylov_beyond_the_inputs_dimension_is_refused_before_config_json(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    _refused(["walk", "hi", "--model", tiny_gpt2_dir, "--layer", "1", "--method", "jacobian", "--directions", "8",
              "--krylov", "9", "--out", out], capsys, "input's dimension 64", "8 x 9 = 72")
    assert not out.exists()


def test_a_cuda_device_this_machine_lacks_is_one_line():
    from lmrep.errors import LmrepError
    from lmrep.models.load import resolve_device
    import torch
    with pytest.raises(LmrepError):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")


@pytest.mark.slow
def test_an_uncached_hub_model_while_offline_is_one_line_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # no offline mode: the hub is asked
    p = subprocess.run([sys.executable, "-m", "lmrep", "invert", "hi", "--model", "no-org/no-such-model-26",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 2 and "Retrying" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_building_the_parser_for_help_or_a_wrong_command_loads_no_torch():
    code = ("import sys, lmrep.cli as c\n"
            "c.build_parser(c.command_in(['--help']))\n"
            "c.build_parser(c.command_in(['bogus', '--x']))\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    code = ("import sys, lmrep.cli as c\n"  # every command's flags (tests/test_cli_fast.py: each command alone)
            "c.build_parser()\n"
            "heavy = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    p = subprocess.run([sys.executable, "-m", "lmrep", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and all(c in p.stdout for c in ("invert", "reconstruct-image", "walk"))


# ---- states files -----------------------------------------------------------------------------------------------

def _states(tmp_path, kind: str):
    path = tmp_path / "s.npy"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind in ("nan", "inf"):
        a = np.ones((3, 64), np.float32)
        a[1, 2] = float(kind)
        np.save(path, a)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "negative-ids":
        import torch
        from safetensors.torch import save_file
        path = tmp_path / "s.safetensors"
        save_file({"0": torch.ones(2, 64)}, path, metadata={"ids": "[[-4, 1]]"})
    return path


@pytest.mark.parametrize("kind,words", [("empty", ["empty (0 bytes)"]), ("nan", ["NaN or infinite"]),
                                        ("inf", ["NaN or infinite"]), ("fifo", ["not a regular file"]),
                                        ("folder", ["is a folder"]), ("negative-ids", ["token ids"])])
def test_a_states_file_that_holds_no_states_is_one_line(tmp_path, capsys, kind, words):
    path = _states(tmp_path, kind)
    _refused(["invert", "--states", path, "--model", "gpt2", "--untrained", "--out", tmp_path / "o"], capsys, *words)
    assert not (tmp_path / "o").exists()


# ---- report folders -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_records_that_hold_less_than_the_summary_are_refused_and_nothing_is_rewritten(tiny_gpt2_dir, tmp_path,
                                                                                     capsys):
    run = tmp_path / "run"
    assert main(["invert", "The sky", "Hi there", "--model", str(tiny_gpt2_dir), "--steps", "3", "--out",
                 str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    lines = [json.loads(x) for x in (run / "items.jsonl").read_text().splitlines()]
    stripped = [{k: v for k, v in r.items() if k not in ("token_accuracy", "exact_match")} for r in lines]
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    capsys.readouterr()
    _refused(["report", run], capsys, "hold less than its summary", "nothing rewritten")
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert after.pop("items.jsonl") != before.pop("items.jsonl") and after == before


@pytest.mark.slow
def test_a_folder_name_goes_into_combined_markdown_as_text(tiny_gpt2_dir, tmp_path, capsys):
    from lmrep.records.inputs import md_code
    run = tmp_path / "<b>x</b> `y`"
    assert main(["invert", "Hi", "--model", str(tiny_gpt2_dir), "--steps", "2", "--out", str(run)]) == 0
    md = tmp_path / "all.md"
    assert main(["report", str(run), "--combined", str(md)]) == 0
    text = md.read_text()
    assert md_code(f"invert {run.name}") in text and md_code(run.name) in text
    outside_code = "".join(text.split("``")[::2])  # what is not inside a double-backtick code span
    assert "<b>" not in outside_code
