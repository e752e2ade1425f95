"""A run's items, one by one: written as whole lines keyed by what the item is, read back in plan order, resumed by
id; tensors stored beside them under the item's id; the progress bar's counts; and the pieces of a run folder a
silent slip in would corrupt what a later run resumes (the JSON written, the fields named as differing)."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from lmrep.engine import ITEMS, TENSORS, ItemLog, MemoryLog, Progress, check_format, item_id
from lmrep.errors import LmrepError
from lmrep.records.folder import RunDir, read_json


def _run(tmp_path) -> RunDir:
    return RunDir.create("invert", dict(steps=1), tmp_path / "run")


def test_an_item_is_one_line_keyed_by_its_id_and_a_rerun_finds_it(tmp_path):
    run = _run(tmp_path)
    log = ItemLog(run)
    assert log.done == {}
    rec = log.add("p | 0", dict(order=1, acc=0.5))
    assert rec == dict(id="p | 0", order=1, acc=0.5) and log.done["p | 0"] == rec
    lines = (run / ITEMS).read_text().splitlines()
    assert [json.loads(x) for x in lines] == [rec]  # one whole line, the id first
    again = ItemLog(run)  # the next run of the same folder
    assert again.done == {"p | 0": rec}


def test_items_come_back_in_plan_order_whatever_order_they_finished_in(tmp_path):
    log = ItemLog(_run(tmp_path))
    for i, order in enumerate([2, 0, 1]):
        log.add(f"item {i}", dict(order=order))
    assert [r["order"] for r in ItemLog(log.run_dir).items()] == [0, 1, 2]
    log.add("old", dict(v=1))  # an item written before plans had an order: file order for all
    assert [r["id"] for r in ItemLog(log.run_dir).items()] == ["item 0", "item 1", "item 2", "old"]


def test_an_items_tensors_are_stored_under_its_id_and_kept_when_more_come(tmp_path):
    log = ItemLog(_run(tmp_path))
    log.attach("a", {})
    assert not (log.run_dir / TENSORS).exists()  # nothing to store: no file
    log.attach("a", dict(start=torch.ones(2), end=torch.zeros(2)))
    log.attach("b", dict(start=torch.full((3,), 2.0)))
    got = ItemLog(log.run_dir).tensors()
    assert set(got) == {"a/start", "a/end", "b/start"}
    assert torch.equal(got["a/start"], torch.ones(2)) and torch.equal(got["b/start"], torch.full((3,), 2.0))


def test_a_resumed_run_says_how_much_it_keeps(tmp_path, caplog):
    log = ItemLog(_run(tmp_path))
    with caplog.at_level(logging.INFO, logger="lmrep"):
        log.resumed(5)
    assert caplog.text == ""  # nothing finished: nothing to say
    log.add("a", {})
    log.add("b", {})
    with caplog.at_level(logging.INFO, logger="lmrep"):
        log.resumed(5, "prompt")
    assert f"resuming '{log.run_dir.path}': 2 of 5 prompt(s) already finished, kept" in caplog.text


def test_a_memory_log_holds_items_and_tensors_and_writes_nothing(tmp_path):
    log = MemoryLog()
    assert log.add("0", dict(n_tokens=3)) == dict(id="0", n_tokens=3) and log.done == {"0": dict(id="0", n_tokens=3)}
    log.attach("0", dict(state=torch.ones(3, 2)))
    log.attach("1", dict(state=torch.zeros(1, 2)))
    assert set(log.tensors) == {"0/state", "1/state"} and torch.equal(log.tensors["0/state"], torch.ones(3, 2))


def test_an_earlier_versions_folder_is_refused_naming_its_file(tmp_path):
    run = _run(tmp_path)
    check_format(run)  # a folder of this version: nothing to say
    (run / "layers.jsonl").write_text("{}\n")
    with pytest.raises(LmrepError) as e:
        check_format(run)
    assert str(e.value) == (f"'{run.path}' was written by an earlier lmrep (layers.jsonl, no items.jsonl): rerun the "
                            "command with --new to redo it in a fresh folder")
    (run / "snapshots.jsonl").write_text("{}\n")
    with pytest.raises(LmrepError, match=rf"convert it with lmrep report --convert '{run.path}', or rerun"):
        check_format(run)


def test_an_item_id_names_its_parts_in_order():
    assert item_id("depth", 3, "The sky", None) == "depth | 3 | The sky | None"
    assert item_id("x") == "x" and item_id("a", "b") != item_id("b", "a")


def test_the_progress_bar_counts_finished_failed_and_retried_items(capsys):
    p = Progress("sweep", enabled=True)
    p.grow(10, 3)  # a plan of 10, 3 finished before
    assert (p.bar.total, p.bar.n) == (10, 3)
    assert p.bar.initial == 3  # items finished before are the bar's start, not part of its rate and time left
    p.grow(5, 2)  # a later stage, 2 of its items finished before
    assert (p.bar.total, p.bar.n, p.bar.initial) == (15, 5, 5)
    p.step("item a")
    assert (p.bar.n, p.failed, p.retried) == (6, 0, 0) and p.bar.postfix == "item a"  # no failure: none shown
    p.fail(2, "item b")
    assert p.bar.postfix == "failed 2, retried 0, item b"  # a failure alone is shown
    p.retry("item c")
    assert (p.failed, p.retried, p.bar.n) == (2, 1, 6)
    assert p.bar.postfix == "failed 2, retried 1, item c"
    p.fail(1, "item d")
    p.retry("item e")  # the counts add up over the run
    assert (p.failed, p.retried) == (3, 2) and p.bar.postfix == "failed 3, retried 2, item e"
    p.step("x" * 60)
    assert p.bar.postfix == "failed 3, retried 2, " + "x" * 40 and p.bar.n == 7
    p.close()
    assert "sweep" in capsys.readouterr().err
    quiet = Progress("sweep", enabled=False)
    quiet.close()  # never shown: nothing to close
    assert quiet._bar is None


# ---- what a run folder writes: the same JSON back, the differing fields named ------------------------------------

def test_json_is_written_whole_indented_and_without_nan(tmp_path):
    run = _run(tmp_path)
    path = run.write_json("summary.json", dict(a=float("nan"), b=(1, 2), c=dict(d=float("inf")), e=0.25))
    assert path == run / "summary.json" and read_json(path) == dict(a=None, b=[1, 2], c=dict(d=None), e=0.25)
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "a": null' in text  # two-space indent, one field a line
    assert read_json(run.write_json("paths.json", dict(p=tmp_path))) == dict(p=str(tmp_path))  # a path, as text
    run.append_jsonl("m.jsonl", dict(x=float("-inf"), p=tmp_path))
    assert json.loads((run / "m.jsonl").read_text()) == dict(x=None, p=str(tmp_path))


def test_a_field_only_one_config_has_is_named_and_short_values_are_shown_whole(tmp_path):
    out = tmp_path / "run"
    RunDir.create("invert", dict(steps=1, note="y" * 30), out)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", dict(steps=1, note="y" * 30, extra=True), out)
    assert "(extra: null there, true now)" in str(e.value)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", dict(steps=1, note="z" * 30), out)  # 32 characters with its quotes: whole
    assert f'note: "{"y" * 30}" there, "{"z" * 30}" now' in str(e.value)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", dict(steps=2, note="y" * 30), out)
    assert str(e.value) == (f"'{out}' holds a run with another configuration (steps: 1 there, 2 now): pass --new for "
                            "a fresh folder beside it, or another --out")


def test_a_nested_field_whose_name_holds_a_dot_shows_its_values(tmp_path):
    out = tmp_path / "run"
    RunDir.create("invert", {"layers": {"blocks.1": 3}}, out)
    with pytest.raises(LmrepError) as e:
        RunDir.create("invert", {"layers": {"blocks.1": 4}}, out)
    assert "(layers.blocks.1: 3 there, 4 now)" in str(e.value)


def test_a_run_folder_is_made_with_its_parents_and_lists_its_files_only(tmp_path):
    from lmrep.records.folder import config_hash
    run = RunDir.create("walk", dict(model=tmp_path / "m", steps=1), tmp_path / "a" / "b" / "run")
    assert run.files() == ["config.json"] and run.config()["model"] == str(tmp_path / "m")  # a path, as text
    (run.path / "sub").mkdir()
    assert run.files() == ["config.json"]  # a folder in it is no file of the run
    assert config_hash(dict(p=tmp_path)) == config_hash(dict(p=str(tmp_path)))  # what is hashed is what is stored


def test_a_file_is_written_beside_its_place_then_renamed_into_it(tmp_path, monkeypatch):
    """The temporary file is in the same folder, so the rename is atomic (and possible: no rename across file
    systems); it is hidden, so a reader listing the folder never sees it."""
    import os

    from lmrep.records.files import write_atomic
    renames, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renames.append((a, b)) or real(a, b))
    write_atomic(tmp_path / "s.json", "{}")
    (src, dst), = renames
    assert os.path.dirname(src) == str(tmp_path) and os.path.basename(src).startswith(".s.json.")
    assert dst == tmp_path / "s.json" and (tmp_path / "s.json").read_text() == "{}"


def test_a_run_left_by_the_writer_it_waited_for_is_not_joined(tmp_path, monkeypatch):
    """The folder is checked again once its lock is held: the writer held it before may have left another run."""
    import lmrep.records.folder as folder
    out = tmp_path / "run"

    def earlier_writer_leaves_a_run(path):
        (path / "config.json").write_text(json.dumps(dict(command="invert", steps=2)))
    monkeypatch.setattr(folder, "hold", earlier_writer_leaves_a_run)
    with pytest.raises(LmrepError, match=r"another configuration \(steps: 2 there, 1 now\)"):
        RunDir.create("invert", dict(steps=1), out)
    assert read_json(out / "config.json") == dict(command="invert", steps=2)  # left as it was


def test_records_are_keyed_by_id_unless_told_and_read_back_as_written(tmp_path):
    from lmrep.records.folder import Records
    run = _run(tmp_path)
    run.append_jsonl("m.jsonl", dict(id="a", v=1))
    run.append_jsonl("m.jsonl", dict(id="b", v=2))
    assert list(Records(run, "m.jsonl").done) == ["a", "b"]
    assert run.read_jsonl("m.jsonl") == [dict(id="a", v=1), dict(id="b", v=2)]


def test_a_field_that_was_a_group_and_is_now_a_value_is_named(tmp_path):
    out = tmp_path / "run"
    RunDir.create("invert", dict(opt=dict(lr=0.5), note="y" * 31), out)
    with pytest.raises(LmrepError, match=r'\(opt: \{"lr": 0.5\} there, "adam" now\)'):
        RunDir.create("invert", dict(opt="adam", note="y" * 31), out)
    with pytest.raises(LmrepError) as e:  # 33 characters with its quotes: cut to 31 and an ellipsis
        RunDir.create("invert", dict(opt=dict(lr=0.5), note="z" * 31), out)
    assert f'note: "{"y" * 30}… there, "{"z" * 30}… now' in str(e.value)


def test_cached_tensors_are_built_once_and_read_back_as_built(tmp_path):
    import torch

    from lmrep.records.files import cached_tensors
    calls = []

    def build():
        calls.append(1)
        return {"a": torch.arange(6.0).reshape(2, 3), "s": torch.tensor(1.5, dtype=torch.float64)}
    path = tmp_path / "cache" / "model" / "t.safetensors"  # folders made as needed, two levels of them
    first, cached = cached_tensors(path, build)
    again, cached_again = cached_tensors(path, build)
    assert calls == [1] and (cached, cached_again) == (False, True)
    assert torch.equal(again["a"], first["a"]) and again["s"].dtype == torch.float64
    assert [p.name for p in path.parent.iterdir()] == ["t.safetensors"]  # no temporary file left beside it
