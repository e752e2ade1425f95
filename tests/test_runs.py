"""Run folders you can trust: one configuration per folder, nothing lost on a rerun or an interruption, nothing
half-written, the same permissions on every file, and a failed run leaves the folder as it was."""
from __future__ import annotations

import json
import logging
import os
import stat

import pytest
import torch

from lmrep.cli import main
from lmrep.engine import ItemLog
from lmrep.errors import LmrepError
from lmrep.experiments import ReproduceConfig
from lmrep.records.lock import HOLDER, LOCK
from lmrep.records.plots import loss_curves
from lmrep.records.folder import Records, RunDir, read_jsonl, write_atomic


def _snapshot(folder) -> dict:
    """Every file of a folder and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# ---- JSON lines -------------------------------------------------------------------------------------------------

def test_a_torn_last_line_is_dropped_and_cut_from_the_file(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "va')
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'  # the next append starts on a line of its own
    path.write_text('{"id": 1}\n{"id": 2}')  # whole, only the newline missing: kept
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}] and path.read_text().endswith("\n")


def test_a_damaged_line_elsewhere_is_an_error_not_a_silent_loss(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1}\ngarbage\n{"id": 3}\n')
    with pytest.raises(LmrepError, match="line 2 .* damaged"):
        read_jsonl(path)


def test_records_keep_the_first_of_each_key(tmp_path):
    run = RunDir(tmp_path)
    run.append_jsonl("m.jsonl", dict(index=0, v="a"))
    run.append_jsonl("m.jsonl", dict(index=1, v="b"))
    run.append_jsonl("m.jsonl", dict(index=0, v="again"))
    recs = Records(run, "m.jsonl", key="index")
    assert {k: r["v"] for k, r in recs.done.items()} == {0: "a", 1: "b"}


@pytest.mark.parametrize("files, convertible", [(("metrics.jsonl", "snapshots.jsonl"), True),
                                                (("metrics.jsonl", "embeddings.safetensors"), False),
                                                (("panels.jsonl", "images.safetensors"), False),
                                                (("layers.jsonl", "images.safetensors"), False)])
def test_folders_of_earlier_versions_are_refused_not_misread(tmp_path, files, convertible):
    run = RunDir.create("invert", {}, tmp_path / "old")
    for name in files:
        (run / name).write_text('{"index": 0}\n')
    with pytest.raises(LmrepError) as e:
        ItemLog(run)
    assert files[0] in str(e.value) and "--new" in str(e.value) and ("--convert" in str(e.value)) == convertible
    run.append_jsonl("items.jsonl", {"id": "a"})  # a folder of this version with a stray old file reads as usual
    assert list(ItemLog(run).done) == ["a"]


# ---- one configuration per folder -------------------------------------------------------------------------------

def test_a_folder_resumes_only_its_own_configuration(tmp_path):
    out = tmp_path / "run"
    RunDir.create("invert", dict(steps=10, prompts=["a"]), out)
    assert RunDir.create("invert", dict(steps=10, prompts=("a",)), out).path == out  # the same config: resume
    before = _snapshot(out)
    with pytest.raises(LmrepError, match=r"another configuration \(steps: 10 there, 20 now\).*--new"):
        RunDir.create("invert", dict(steps=20, prompts=["a"]), out)
    with pytest.raises(LmrepError, match="another kind"):
        RunDir.create("walk", dict(steps=10, prompts=["a"]), out)
    assert _snapshot(out) == before
    fresh = RunDir.create("invert", dict(steps=20, prompts=["a"]), out, new=True)
    assert fresh.path == tmp_path / "run-2" and fresh.config()["steps"] == 20
    assert RunDir.create("invert", dict(steps=20, prompts=["a"]), out, new=True).path == tmp_path / "run-2"


@pytest.mark.parametrize("content", ["not json {", '["a list"]', None])
def test_a_foreign_folder_is_refused(tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    if content is None:
        (out / "notes.txt").write_text("someone's files")
    else:
        (out / "config.json").write_text(content)
    before = _snapshot(out)
    with pytest.raises(LmrepError):
        RunDir.create("invert", dict(steps=10), out)
    assert _snapshot(out) == before


def test_a_reproduce_run_with_another_setting_does_not_mix(tmp_path, capsys):
    """The issue's case: a --setting text run aimed at a folder of --setting original items."""
    out = tmp_path / "depth"
    RunDir.create("reproduce-depth", ReproduceConfig("depth", quick=True, setting="original").resolved().to_dict(),
                  out)
    (out / "items.jsonl").write_text(json.dumps({"id": "x", "setting": "original"}) + "\n")
    before = _snapshot(out)
    assert main(["reproduce", "depth", "--quick", "--setting", "text", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "setting" in err and "--new" in err
    assert _snapshot(out) == before


def test_a_failed_run_leaves_the_folder_as_it_was(tmp_path, capsys):
    """The issue's case: a threshold run with a model that is not one, aimed at a depth folder."""
    out = tmp_path / "depth"
    RunDir.create("reproduce-depth", ReproduceConfig("depth", quick=True).resolved().to_dict(), out)
    before = _snapshot(out)
    assert main(["reproduce", "threshold", "--quick", "--model", str(tmp_path), "--out", str(out)]) == 2
    assert _snapshot(out) == before
    assert main(["report", str(out)]) == 2  # still one line: the depth folder has no finished item
    assert "no finished item" in capsys.readouterr().err


# ---- whole files, same permissions ------------------------------------------------------------------------------

def test_every_writer_gives_the_same_permissions(tmp_path):
    run = RunDir.create("invert", dict(steps=1), tmp_path / "run")
    run.write_json("summary.json", {"a": 1})
    run.append_jsonl("items.jsonl", {"a": 1})
    run.save_tensors("t.safetensors", {"x": torch.zeros(2)})
    loss_curves({"a": [1.0, 0.5]}, run / "loss.png")
    write_atomic(run / "report.md", "# hi\n")
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.path.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes
    left = [p for p in run.path.iterdir() if p.name.startswith(".") and p.name not in (LOCK, HOLDER)]
    assert not left  # no temporary file left behind (the writer's lock stays: the kernel releases it)


def test_tensors_are_added_not_replaced(tmp_path):
    run = RunDir.create("walk", {}, tmp_path / "run")
    run.add_tensors("e.safetensors", {"0.start": torch.ones(2)})
    run.add_tensors("e.safetensors", {"1.start": torch.zeros(3)})
    assert set(run.load_tensors("e.safetensors")) == {"0.start", "1.start"}
    (run / "e.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LmrepError, match="damaged"):
        run.load_tensors("e.safetensors")


# ---- reruns keep earlier results --------------------------------------------------------------------------------

def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*a, **kw):
        calls.append(a)
        return real(*a, **kw)
    monkeypatch.setattr(module, name, counted)
    return calls


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_invert_rerun_keeps_and_skips_finished_prompts(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    import lmrep.inversion.report as inv
    out = tmp_path / "run"
    argv = ["invert", "one", "two", "three", "--model", str(tiny_gpt2_dir), "--steps", "3", "--batch-size", "2",
            "--out", str(out)]
    real = inv.invert

    def interrupted(target, prompts, cfg, progress=True):
        for i, rec in enumerate(real(target, prompts, cfg, progress)):
            if i == 1:
                raise KeyboardInterrupt
            yield rec
    monkeypatch.setattr(inv, "invert", interrupted)
    assert main(argv) == 130
    first = (out / "items.jsonl").read_text()
    assert [r["prompt"] for r in _lines(out / "items.jsonl")] == ["one"]
    monkeypatch.setattr(inv, "invert", real)
    calls = _count_calls(monkeypatch, inv, "invert")
    assert main(argv) == 0
    assert [c[1] for c in calls] == [["two", "three"]]  # only what was missing, batched as a fresh run would
    after = (out / "items.jsonl").read_text()
    assert after.startswith(first) and [r["order"] for r in _lines(out / "items.jsonl")] == [0, 1, 2]
    assert all(r["snapshots"] for r in _lines(out / "items.jsonl"))
    assert main(argv) == 0 and len(calls) == 1  # everything finished: nothing runs, nothing is deleted
    assert (out / "items.jsonl").read_text() == after
    assert "3 of 3 prompt(s) already finished" in capsys.readouterr().err


@pytest.mark.slow
def test_walk_rerun_keeps_and_skips_finished_walks(tiny_gpt2_dir, tmp_path, monkeypatch):
    import lmrep.walks.report as wr
    out = tmp_path / "walk"
    argv = ["walk", "The sky is blue.", "Hello world", "--model", str(tiny_gpt2_dir), "--layer", "2", "--steps", "1",
            "--seeds", "2", "--out", str(out), "--json"]
    assert main(argv) == 0
    first = (out / "items.jsonl").read_text()
    assert len(first.splitlines()) == 4
    tensors = RunDir(out).load_tensors("tensors.safetensors")
    assert len(tensors) == 8 and all(f"{r['id']}/start" in tensors for r in _lines(out / "items.jsonl"))
    calls = _count_calls(monkeypatch, wr, "walk_items")
    (out / "items.jsonl").write_text("".join(line + "\n" for line in first.splitlines()[:3]))  # one walk lost
    assert main(argv) == 0
    assert [len(c[1]) for c in calls] == [1]
    lines = (out / "items.jsonl").read_text().splitlines()
    assert lines[:3] == first.splitlines()[:3]  # kept as written
    redone, lost = json.loads(lines[3]), json.loads(first.splitlines()[3])
    assert (redone["id"], redone["seed"], redone["prompt"]) == (lost["id"], lost["seed"], lost["prompt"])
    assert redone["r"] == pytest.approx(lost["r"], rel=1e-4)  # alone, not in a batch: the same walk to rounding
    again = RunDir(out).load_tensors("tensors.safetensors")
    assert set(again) == set(tensors)
    assert all(torch.equal(tensors[k], again[k]) for k in tensors if not k.startswith(lost["id"]))


@pytest.mark.slow
def test_invert_into_a_folder_of_another_config(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["invert", "one", "--model", str(tiny_gpt2_dir), "--out", str(out)]
    assert main(base + ["--steps", "2"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(base + ["--steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "steps: 2 there, 3 now" in err
    assert _snapshot(out) == before
    assert main(base + ["--steps", "3", "--new"]) == 0
    assert json.loads((tmp_path / "run-2" / "config.json").read_text())["steps"] == 3


def test_the_exact_summary_names_only_what_it_wrote(tiny_gpt2_dir, tmp_path, capsys):
    assert main(["invert", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--method", "exact",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "loss.png" not in out and "m_g" not in out and "verified   yes" in out
    assert not (tmp_path / "run" / "loss.png").exists()


# ---- the pieces of a run folder, one by one -----------------------------------------------------------------------

def test_config_hash_and_json_as_stored():
    from lmrep.records.folder import as_json, config_hash, dumps
    a, b = dict(steps=10, prompts=["a"], lr=0.1), dict(lr=0.1, prompts=["a"], steps=10)
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 8
    assert config_hash(a) != config_hash(dict(a, steps=11))
    assert as_json(dict(t=(1, 2), x=float("nan"), y=[float("inf"), {"z": float("-inf")}], w=0.5)) == \
        dict(t=[1, 2], x=None, y=[None, {"z": None}], w=0.5)
    assert dumps(dict(p=tmp_path_like("/a/b"), n=float("nan"))) == '{"p": "/a/b", "n": null}'  # str() the rest


def tmp_path_like(text: str):
    from pathlib import Path
    return Path(text)


def test_differences_name_nested_fields_and_are_shown_short(tmp_path):
    out = tmp_path / "run"
    RunDir.create("invert", dict(steps=10, opt=dict(lr=0.1, name="adam"), prompts=["a"], a=1, b=2, c=3), out)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", dict(steps=10, opt=dict(lr=0.2, name="adam"), prompts=["a"], a=5, b=6, c=7), out)
    assert "opt.lr: 0.1 there, 0.2 now; a: 1 there, 5 now; b: 2 there, 6 now; and 1 more" in str(e.value)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", dict(steps=10, opt=dict(lr=0.1, name="adam"), prompts=["x" * 50], a=1, b=2, c=3), out)
    assert 'prompts: ["a"] there, ["' + "x" * 29 + "… now" in str(e.value)  # 31 characters and an ellipsis


def test_a_new_folder_is_named_by_its_config_and_writes_config_first(tmp_path):
    from lmrep.records.folder import config_hash
    run = RunDir.create("walk", dict(steps=3), root=tmp_path)
    assert run.path == tmp_path / f"walk-{config_hash(dict(steps=3))}"
    assert run.files() == ["config.json"] and run.config() == dict(command="walk", steps=3)
    (run.path / ".hidden").write_text("x")
    run.write_text("notes.md", "hi\n")
    assert run.files() == ["config.json", "notes.md"] and (run / "notes.md").read_text() == "hi\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".keep").write_text("")  # a folder with hidden files only is empty
    assert RunDir.create("walk", dict(steps=3), empty).path == empty


def test_a_run_config_without_a_command_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"steps": 1}')
    with pytest.raises(LmrepError, match="not an lmrep run config"):
        RunDir(tmp_path).config()
    (tmp_path / "config.json").write_text('{"command": 1}')
    with pytest.raises(LmrepError, match="not an lmrep run config"):
        RunDir(tmp_path).config()
    (tmp_path / "config.json").write_text('{"command": "invert"')
    with pytest.raises(LmrepError, match=r"not valid JSON \(line 1\)"):
        RunDir(tmp_path).config()


def test_json_lines_edge_cases(tmp_path):
    path = tmp_path / "m.jsonl"
    assert read_jsonl(path) == []  # no file: nothing yet
    path.write_text('{"id": 1}\n\n{"id": 2}\n')  # a blank line is skipped, the file left as it is
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}] and path.read_text() == '{"id": 1}\n\n{"id": 2}\n'
    path.write_text('{"id": 1}\n[1, 2]\n{"id": 3}\n')  # JSON, but not a record
    with pytest.raises(LmrepError, match="line 2 "):
        read_jsonl(path)
    path.write_text('{"id": 1}\n"torn')  # a last line that is no record and has no newline: torn
    assert read_jsonl(path) == [{"id": 1}] and path.read_text() == '{"id": 1}\n'
    path.write_text('{"id": 1}\n"whole"\n')  # ... but with its newline it was written whole: damaged
    with pytest.raises(LmrepError, match="line 2 "):
        read_jsonl(path)


def test_records_without_their_key_are_refused(tmp_path):
    run = RunDir(tmp_path)
    run.append_jsonl("m.jsonl", dict(id="a", v=1))
    run.append_jsonl("m.jsonl", dict(id="b", v=2))
    before = (tmp_path / "m.jsonl").stat().st_mtime_ns
    recs = Records(run, "m.jsonl", key=lambda r: r["id"] + "!")
    assert set(recs.done) == {"a!", "b!"}
    assert (tmp_path / "m.jsonl").stat().st_mtime_ns == before  # reading rewrote nothing
    assert recs.add(dict(id="c", v=3)) == dict(id="c", v=3) and recs.done["c!"]["v"] == 3
    assert read_jsonl(tmp_path / "m.jsonl")[-1] == dict(id="c", v=3)
    run.append_jsonl("m.jsonl", dict(v=4))
    with pytest.raises(LmrepError, match="without its key"):
        Records(run, "m.jsonl")


@pytest.mark.parametrize("where,says", [("file", "is an existing file"), ("under-file", "is a file, not a folder"),
                                        ("proc", "under /proc"), ("dev", "under /dev")])
def test_places_that_cannot_hold_a_run_folder(tmp_path, where, says):
    from lmrep.records.folder import check_out_dir
    f = tmp_path / "f"
    f.write_text("x")
    path = {"file": f, "under-file": f / "a" / "b", "proc": "/proc/x", "dev": "/dev"}[where]
    with pytest.raises(LmrepError, match=says):
        check_out_dir(path)
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # the check writes nothing


@pytest.mark.parametrize("where,says", [("folder", "is a folder"), ("no-parent", "does not exist"),
                                        ("sys", "under /sys")])
def test_places_that_cannot_hold_an_output_file(tmp_path, where, says):
    from lmrep.records.folder import check_out_file
    path = {"folder": tmp_path, "no-parent": tmp_path / "no" / "a.md", "sys": "/sys/a.md"}[where]
    with pytest.raises(LmrepError, match=says):
        check_out_file(path)
    assert check_out_file(tmp_path / "a.md") == tmp_path / "a.md"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "s.json", "old")
    real = os.replace

    def broken(a, b):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    monkeypatch.setattr(os, "replace", real)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert write_atomic(path, b"\x00bytes").read_bytes() == b"\x00bytes"


def test_new_takes_the_first_free_folder(tmp_path, caplog):
    out = tmp_path / "run"
    RunDir.create("invert", dict(steps=1), out)
    RunDir.create("invert", dict(steps=2), out, new=True)
    with caplog.at_level(logging.INFO, logger="lmrep"):
        third = RunDir.create("invert", dict(steps=3), out, new=True)
    assert third.path == tmp_path / "run-3"
    assert f"'{out}' holds another run; this one goes to '{tmp_path / 'run-3'}'" in caplog.text
    assert RunDir(tmp_path / "nothing").load_tensors("t.safetensors") == {}
