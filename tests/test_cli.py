"""The CLI end to end, and one-line errors with exit code 2 for every kind of bad input."""
import json
import re
import subprocess
import sys

import pytest

from lmrep.cli import main

REQUIRED = {"model", "layer", "method", "prompt", "target_ids", "recovered_ids", "recovered_text", "token_accuracy",
            "exact_match", "output_distance", "threshold", "within_threshold", "steps", "seconds"}


@pytest.mark.slow
def test_invert_end_to_end(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["invert", "The sky is blue.", "Hello world", "--model", str(tiny_gpt2_dir), "--layer", "2",
                 "--steps", "15", "--json", "--out", str(out), "--topk", "2"])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in lines] == ["The sky is blue.", "Hello world"]
    assert all(REQUIRED <= set(r) for r in lines)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".lmrep.lock")) == ["config.json", "items.jsonl", "loss.png", "summary.json"]
    assert json.loads((out / "config.json").read_text())["steps"] == 15
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in items] == ["The sky is blue.", "Hello world"] and [r["order"] for r in items] == [0, 1]
    assert all(r["snapshots"] and r["loss_curve"] for r in items)  # the whole record, on one line
    assert not any("snapshots" in r or "loss_curve" in r for r in lines)  # --json leaves the bulky parts out


def test_invert_table(tiny_gpt2_dir, tmp_path, capsys):
    assert main(["invert", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--steps", "5",
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    (rec,) = [json.loads(x) for x in (tmp_path / "items.jsonl").read_text().splitlines()]
    # the table shows the numbers the run folder holds, not just its headings
    assert f"recovered  {rec['recovered_text']!r}" in text and f"prompt     {rec['prompt']!r}" in text
    assert f"token acc {rec['token_accuracy']:.2f}  exact {'yes' if rec['exact_match'] else 'no'}" in text
    assert f"token accuracy {rec['token_accuracy']:.3f} (n=1)" in text
    assert f"run folder: {tmp_path}  (" in text and "loss.png" in text.split("run folder:")[1]


def test_models_command(capsys):
    """The table has one line per model of `lmrep models --json`, with its size and whether it is here."""
    assert main(["models", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {"smollm2-135m", "gpt2 --untrained", "vit-b16"} <= {r["name"] for r in rows}
    for r in rows:
        offline = "yes" if r["offline"] else "no"
        row = re.compile(rf"\s+{re.escape(r['name'])}\s+{re.escape(r['size'])}\s+{offline}\s+{re.escape(r['about'])}$")
        assert len([line for line in lines if row.match(line)]) == 1, r


@pytest.mark.slow
def test_prompts_file(tiny_gpt2_dir, tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("# a comment\nThe sky is blue.\n\nHello world\n")
    assert main(["invert", "--prompts-file", str(f), "--model", str(tiny_gpt2_dir), "--steps", "3", "--json",
                 "--out", str(tmp_path / "r")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.slow
def test_interrupt_keeps_finished_prompts(tiny_gpt2_dir, tmp_path, monkeypatch):
    import lmrep.inversion.gd as gd
    real = gd._run_batch
    calls = {"n": 0}

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        yield from real(*a, **kw)

    monkeypatch.setattr(gd, "_run_batch", interrupted)
    out = tmp_path / "run"
    code = main(["invert", "one", "two", "three", "--model", str(tiny_gpt2_dir), "--steps", "3", "--batch-size", "1",
                 "--out", str(out)])
    assert code == 130
    assert [json.loads(x)["prompt"] for x in (out / "items.jsonl").read_text().splitlines()] == ["one"]
    assert (out / "summary.json").exists()


BAD = [
    (["invert", ""], "empty prompt"),
    (["invert", "word " * 100], "at most 64"),
    (["invert", "hi", "--layer", "-1"], "out of range"),
    (["invert", "hi", "--layer", "4"], "out of range"),
    (["invert", "hi", "--prompts-file", "/nonexistent/prompts.txt"], "not found"),
    (["invert", "hi", "--steps", "0"], "must be 1 or more"),
    (["invert", "hi", "--steps", "ten"], "not a whole number"),
    (["invert", "hi", "--lr", "-0.1"], "positive"),
    (["invert", "hi", "--lr", "nan"], "positive"),
    (["invert", "hi", "--decoder", "nearest"], "invalid choice"),
    (["invert", "hi", "--loss", "l3"], "invalid choice"),
    (["invert", "hi", "--init", "zeros"], "invalid choice"),
    (["invert", "hi", "--optimizer", "lbfgs"], "invalid choice"),
    (["invert", "hi", "--topk", "0"], "must be 1 or more"),
    (["invert", "hi", "--topk", "60000"], "vocabulary size"),
    (["invert", "hi", "--head", "logits", "--layer", "0"], "at least one block"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, tiny_gpt2_dir, tmp_path, capsys):
    argv = argv + ["--model", str(tiny_gpt2_dir), "--out", str(tmp_path / "r"), "--steps", "2"] \
        if "--steps" not in argv else argv + ["--model", str(tiny_gpt2_dir), "--out", str(tmp_path / "r")]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own checks exit from inside the parser
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("argv,message", [
    (["invert", "hi", "--model", "no such model"], "unknown model"),
    (["invert", "hi", "--model", "someone/not-cached-here"], "cannot load model"),
    (["invert", "hi", "--model", "gpt2", "--untrained", "--device", "cuda"], "no CUDA"),
])
def test_model_errors(argv, message, capsys):
    import torch
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.slow
def test_no_traceback_from_a_real_process(tiny_gpt2_dir, tmp_path):
    p = subprocess.run([sys.executable, "-m", "lmrep", "invert", "hi", "--layer", "99", "--model", str(tiny_gpt2_dir),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "out of range" in p.stderr

