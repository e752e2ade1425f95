"""`lmrep report` on every kind of run folder (rebuilt from its files alone, to the byte), and one line for a folder
that is broken, incomplete or foreign. The vision kinds are rebuilt in test_vision.py, the experiments' in
test_reproduce.py, with the runs those files already make."""
from __future__ import annotations

import json

import pytest

from lmrep.cli import main


def rebuilds_the_same(run, capsys) -> None:
    """Delete the summary and figures of a finished run, rebuild them with lmrep report, compare."""
    summary = (run / "summary.json").read_text()
    pngs = sorted(p.name for p in run.glob("*.png"))
    for p in [run / "summary.json", *run.glob("*.png")]:
        p.unlink()
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert (run / "summary.json").read_text() == summary
    assert sorted(p.name for p in run.glob("*.png")) == pngs
    assert f"rebuilt {run}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def invert_run(tiny_gpt2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inv") / "run"
    assert main(["invert", "The sky is blue.", "Hello", "--model", str(tiny_gpt2_dir), "--steps", "3",
                 "--out", str(out), "--json"]) == 0
    return out


@pytest.mark.slow
def test_report_rebuilds_an_invert_run(invert_run, capsys):
    rebuilds_the_same(invert_run, capsys)
    assert (invert_run / "loss.png").exists()


@pytest.mark.slow
def test_report_rebuilds_a_walk_run(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "walk"
    assert main(["walk", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--layer", "2", "--steps", "2",
                 "--out", str(out), "--json"]) == 0
    rebuilds_the_same(out, capsys)
    assert (out / "walk.png").exists()


def test_combined_report_of_runs_of_different_kinds(invert_run, tmp_path, capsys):
    assert main(["report", str(invert_run), "--combined", str(tmp_path / "all.md")]) == 0
    text = (tmp_path / "all.md").read_text()
    assert "invert run" in text and "loss.png" in text and '"prompts": 2' in text


def test_the_site_shows_an_invert_run_per_prompt(invert_run, tmp_path):
    assert main(["report", str(invert_run), "--html", str(tmp_path / "site")]) == 0
    page = (tmp_path / "site" / f"{invert_run.name}.html").read_text()
    items = [json.loads(x) for x in (invert_run / "items.jsonl").read_text().splitlines()]
    assert page.count('<table class="snapshots">') == len(items) == 2  # the snapshots come from each item's line
    assert page.count('class="tok ') == sum(len(r["recovered_ids"]) for r in items) + 5  # + the legend's five


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


BROKEN = {
    "no folder": lambda d: d / "missing",
    "no config.json": lambda d: (d / "items.jsonl").unlink() or (d / "config.json").unlink() or d,
    "config.json cut short": lambda d: (d / "config.json").write_text('{"command": "inv') or d,
    "a foreign kind": lambda d: (d / "config.json").write_text('{"command": "something-else"}') or d,
    "no command": lambda d: (d / "config.json").write_text('{"model": "x"}') or d,
    "no results yet": lambda d: (d / "items.jsonl").unlink() or d,
    "results of another shape": lambda d: (d / "items.jsonl").write_text('{"id": "0 | x", "x": 1}\n') or d,
    "binary results": lambda d: (d / "items.jsonl").write_bytes(b"\x00\x01\x02\n") or d,
    "a file, not a folder": lambda d: d / "config.json",
}


@pytest.mark.parametrize("damage", list(BROKEN))
def test_a_broken_incomplete_or_foreign_folder_is_one_line(damage, invert_run, tmp_path, capsys):
    folder = BROKEN[damage](_copy(invert_run, tmp_path / "copy"))
    capsys.readouterr()
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lmrep report: error:") and "Traceback" not in err, err


def test_every_folder_is_checked_before_any_is_rebuilt(invert_run, tmp_path, capsys):
    before = (invert_run / "summary.json").stat().st_mtime_ns
    assert main(["report", str(invert_run), str(tmp_path / "missing")]) == 2
    assert (invert_run / "summary.json").stat().st_mtime_ns == before


def _old_invert_folder(run, dst):
    """An invert run as an earlier lmrep wrote it: metrics.jsonl (keyed by index, no snapshots), snapshots.jsonl."""
    folder = _copy(run, dst)
    items = [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]
    (folder / "items.jsonl").unlink()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(dict(
        index=r["order"], **{k: v for k, v in r.items() if k not in ("id", "order", "snapshots")})) + "\n"
        for r in items))
    (folder / "snapshots.jsonl").write_text("".join(json.dumps(dict(index=r["order"], prompt=r["prompt"],
                                                                    snapshots=r["snapshots"])) + "\n" for r in items))
    return folder, items


@pytest.mark.slow
def test_an_old_invert_folder_is_refused_then_converted(invert_run, tiny_gpt2_dir, tmp_path, capsys):
    folder, items = _old_invert_folder(invert_run, tmp_path / "old")
    capsys.readouterr()
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.jsonl" in err and "--convert" in err, err
    argv = ["invert", "The sky is blue.", "Hello", "--model", str(tiny_gpt2_dir), "--steps", "3", "--out", str(folder)]
    assert main(argv) == 2  # the same command does not resume into it (nor misread it)
    assert "--convert" in capsys.readouterr().err and not (folder / "items.jsonl").exists()
    (folder / "summary.json").unlink()
    assert main(["report", "--convert", str(folder)]) == 0
    assert [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()] == items
    assert (folder / "summary.json").read_text() == (invert_run / "summary.json").read_text()
    assert main(argv + ["--json"]) == 0  # now it resumes: every prompt is finished
    assert "2 of 2 prompt(s) already finished" in capsys.readouterr().err


def test_a_states_file_is_not_a_run_folder(tiny_gpt2_dir, tmp_path, capsys):
    states = tmp_path / "s.safetensors"
    assert main(["capture", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--layer", "1", "--out",
                 str(states)]) == 0
    capsys.readouterr()
    assert main(["report", str(states)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"lmrep invert --states '{states}'" in err, err


def test_depth_figure_styles_tell_every_series_apart():
    from lmrep.experiments.figures import styles
    kinds = {f"{m}, {meth}, {d}": (meth, d, m) for m in ("smollm2-135m", "gpt2 untrained")
             for meth, decs in (("gd", ("pinv", "l2", "cosine")), ("nearest", ("pinv", "l2", "cosine")),
                                ("exact", ("own",))) for d in decs}
    looks = styles(kinds)
    assert len(kinds) == 14 and len({tuple(sorted(v.items())) for v in looks.values()}) == 14
    assert len({v["color"] for v in looks.values()}) == 3  # one colour per method


def test_summary_json_is_json(invert_run):
    assert json.loads((invert_run / "summary.json").read_text())["prompts"] == 2


@pytest.mark.slow
def test_the_committed_results_are_what_lmrep_report_builds_from_their_json(tmp_path, capsys):
    """docs/results.md and the summaries and reports of the runs it is built from (the Makefile's RESULTS, what
    `make results` combines) come from the committed items alone: rebuilt in a copy (same folder layout), every
    file is byte for byte what is committed."""
    import re
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    (listed,) = re.findall(r"^RESULTS := (.+)$", (root / "Makefile").read_text(), re.M)
    runs = [Path(r) for r in listed.split()]
    assert Path("results") / "cpu" in runs and all((root / r / "config.json").exists() for r in runs)
    shutil.copytree(root / "results", tmp_path / "results")
    (tmp_path / "docs").mkdir()
    for run in runs:
        for p in (tmp_path / run).rglob("*"):
            if p.name in ("summary.json", "report.md") or p.suffix == ".png":
                p.unlink()
    out = tmp_path / "docs" / "results.md"
    assert main(["report", *(str(tmp_path / run) for run in runs), "--combined", str(out)]) == 0
    assert out.read_text() == (root / "docs" / "results.md").read_text()
    for run in runs:
        for p in (root / run).rglob("*"):
            if p.name in ("summary.json", "report.md"):
                assert (tmp_path / p.relative_to(root)).read_text() == p.read_text(), p
    assert "| depth | original |" in out.read_text() and "`decisive/threshold` |" in out.read_text()



def test_a_report_calls_a_cut_run_cut():
    """The profile line says what ran: quick, full, or full cut by the options that shrink it."""
    from lmrep.experiments.reporting import profile_label
    assert profile_label(dict(quick=True, steps=200, seeds=1)) == "quick"
    assert profile_label(dict(quick=False, steps=0, seeds=3, layers=[])) == "full"
    assert profile_label(dict(quick=False, steps=0, seeds=5, layers=[])) == "full"
    assert profile_label(dict(quick=False, steps=200, seeds=2, layers=[1, 30])) == \
        "full, cut to N = 200, seeds 2, layers [1, 30]"
    assert profile_label(dict(quick=False, steps=0, seeds=1, layers=[])) == "full, cut to seeds 1"
