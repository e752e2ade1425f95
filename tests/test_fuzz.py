"""Generated input for every command (hypothesis): argument values, states files, spec files and report folders.

The contract, whatever comes in: exit 0, or exit 2 with one line; never a traceback; never a file written outside
the folder the command was given (``--out``, the report's own folders) and never one in the working folder. A run
that would start the heavy work of features, reconstruct-image, reproduce and sweep stops where its run folder is
made (every check is behind it), and that folder must be inside ``--out``; invert, walk and capture run for real
on a tiny model. A few examples per command in the default run; ``pytest -m fuzz`` runs many more.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrep.cli import build_parser, main
from lmrep.records.folder import RunDir

PARSER = build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
HEAVY = ("features", "reconstruct-image", "reproduce", "sweep")  # stopped where their run folder would be made
SKIP = {"--executor", "--address", "--workers", "--trust-remote-code", "--help", "--wait"}  # what reaches out
SLOW = {"exact", "ray", "all", "gemma3-270m", "smollm2-135m"}  # choices that turn a quick check into minutes
QUICK, MANY = 6, 200

text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and control characters too
number = st.one_of(st.integers(0, 3).map(str), st.integers(-10 ** 30, -1).map(str),
                   st.integers(10 ** 7 + 1, 10 ** 30).map(str), st.floats().map(repr),
                   st.sampled_from(["nan", "inf", "1e309", "", "0x10", "1_0", " 2", "٣", "1e-400", "0.5"]), text)


class Ready(Exception):
    """A heavy command passed every check: this is where its work would begin."""


def _value(action) -> st.SearchStrategy:
    kind = getattr(action.type, "kind", None)
    if action.choices:
        return st.one_of(st.sampled_from([c for c in action.choices if c not in SLOW] or ["x"]), text)
    return number if kind in (int, float) else text


@st.composite
def _argv(draw, name: str, model: str, out: Path) -> list[str]:
    sub = COMMANDS[name]
    flags = [a for a in sub._actions if a.option_strings and not SKIP & set(a.option_strings)
             and a.dest not in ("out", "model")]
    argv = [name] + draw(st.lists(st.sampled_from(["The sky is blue.", "Hi"]) | text, min_size=0, max_size=2))
    for a in draw(st.lists(st.sampled_from(flags), max_size=4, unique_by=lambda a: a.dest)):
        argv.append(a.option_strings[-1] if a.nargs == 0 else a.option_strings[0])
        if a.nargs != 0:
            n = a.nargs if isinstance(a.nargs, int) else (1 if a.nargs in (None, "?") else draw(st.integers(1, 2)))
            argv += [draw(_value(a)) for _ in range(n)]
    if "--model" in sub._option_string_actions:
        argv += ["--model", draw(st.sampled_from([model, model, "no-org/no-model"]) | text)]
    if "--steps" not in argv and "--steps" in sub._option_string_actions:
        argv += ["--steps", "2"]
    if "--layer" not in argv and "--layer" in sub._option_string_actions:
        argv += ["--layer", "1"]
    return argv + ["--out", str(out / ("s.safetensors" if name == "capture" else "run"))]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _check(argv: list[str], root: Path, inside: list[Path], capsys, monkeypatch) -> int:
    """Run ``argv`` in the empty folder root/cwd; assert the contract; the exit code."""
    cwd, before = root / "cwd", _files(root)
    cwd.mkdir(exist_ok=True)
    home = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    except Ready as e:  # a heavy command about to start: its run folder is where it was told
        where = Path(e.args[0] or "runs").resolve()
        assert any(where.is_relative_to(p.resolve()) for p in inside), (argv, where)
        code = 0
    finally:
        os.chdir(home)  # the example's folders go away with it
    err = capsys.readouterr().err.strip()
    assert code in (0, 2, None), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert len(err.splitlines()) == 1, (argv, err)
    changed = [f for f, size in _files(root).items() if before.get(f) != size]
    outside = [f for f in changed if not any((root / f).resolve().is_relative_to(p.resolve()) for p in inside)]
    assert not outside, (argv, outside)
    return code


@pytest.fixture
def heavy_stops(monkeypatch):
    """RunDir.create for the heavy commands (a sweep's runs, not its top folder): the run stops there (Ready)."""
    real = RunDir.create.__func__

    def create(cls, kind, config, out=None, root="runs", new=False):
        if not kind.startswith(("invert", "walk", "sweep")) or kind.startswith("sweep-"):
            raise Ready(out)
        return real(cls, kind, config, out, root, new)
    monkeypatch.setattr(RunDir, "create", classmethod(create))


def _examples(many: bool):
    return settings(max_examples=MANY if many else QUICK, deadline=None, derandomize=not many,
                    suppress_health_check=list(HealthCheck))


def _arguments(data, name, tiny_gpt2_dir, capsys, monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "out").mkdir()
        argv = data.draw(_argv(name, str(tiny_gpt2_dir), root / "out"))
        _check(argv, root, [root / "out"], capsys, monkeypatch)


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("many", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["quick", "many"])
def test_any_arguments_keep_the_contract(name, many, tiny_gpt2_dir, capsys, monkeypatch, heavy_stops):
    given(data=st.data())(_examples(many)(lambda data: _arguments(data, name, tiny_gpt2_dir, capsys,
                                                                  monkeypatch)))()


states = st.one_of(st.binary(max_size=64).map(lambda b: ("bin", b)),
                   st.tuples(st.sampled_from([(0, 64), (2, 64), (3, 63), (1, 2, 64), (2,), (2, 0)]),
                             st.sampled_from([0.0, float("nan"), float("inf"), 1e38])).map(lambda t: ("npy", t)))


def _states(kind, spec, tiny_gpt2_dir, capsys, monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        path = root / "states.npy"
        if kind == "bin":
            path.write_bytes(spec)
        else:
            shape, fill = spec
            a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            if a.size:
                a.flat[0] = fill or a.flat[0]
            np.save(path, a)
        argv = ["invert", "--states", str(path), "--model", str(tiny_gpt2_dir), "--layer", "1", "--steps", "2",
                "--out", str(root / "out")]
        _check(argv, root, [root / "out"], capsys, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("many", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["quick", "many"])
def test_any_states_file_keeps_the_contract(many, tiny_gpt2_dir, capsys, monkeypatch):
    given(s=states)(_examples(many)(lambda s: _states(*s, tiny_gpt2_dir, capsys, monkeypatch)))()


SPEC_VALUES = dict(name=text | st.sampled_from(["../../x", "/tmp/x", "ok", ".h", "a/b"]),
                   prompts_file=st.sampled_from(["p.txt", "../p.txt", "/etc/hostname", "sub/../p.txt", "~/p"]) | text,
                   seeds=st.integers(-5, 10 ** 20) | st.lists(st.integers(-3, 2 ** 40), max_size=3),
                   layers=st.lists(st.integers(-2, 10 ** 12), max_size=3), steps=st.integers(-3, 10 ** 20))


@st.composite
def _spec(draw) -> str:
    chosen = draw(st.lists(st.sampled_from(sorted(SPEC_VALUES)), unique=True, max_size=3))
    lines = [f"{k} = {json.dumps(draw(SPEC_VALUES[k]))}" for k in chosen]
    top = draw(st.sampled_from(["", 'out = "../escape"', 'device = "meta"', 'out = "o"']))
    return f"{top}\n[grid]\nmodels = [\"tiny\"]\nprompts = [\"a b\"]\n" + "\n".join(lines) + "\n"


def _sweep(spec, tiny_gpt2_dir, capsys, monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        shutil.copytree(tiny_gpt2_dir, root / "specs" / "tiny")
        (root / "specs" / "p.txt").write_text("from the spec's folder\n")
        (root / "specs" / "s.toml").write_text(spec, errors="surrogatepass")
        _check(["sweep", str(root / "specs" / "s.toml"), "--out", str(root / "out")], root, [root / "out"], capsys,
               monkeypatch)


@pytest.mark.parametrize("many", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["quick", "many"])
def test_any_sweep_spec_keeps_the_contract(many, tiny_gpt2_dir, capsys, monkeypatch, heavy_stops):
    given(spec=_spec())(_examples(many)(lambda spec: _sweep(spec, tiny_gpt2_dir, capsys, monkeypatch)))()


@pytest.fixture(scope="module")
def invert_run(tiny_gpt2_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz-report") / "run"
    assert main(["invert", "The sky", "Hi", "--model", str(tiny_gpt2_dir), "--steps", "3", "--out", str(run)]) == 0
    return run


junk_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                         max_leaves=6)


def _report(edits, run, capsys, monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        folder = root / "run"
        shutil.copytree(run, folder)
        (root / "out").mkdir()
        lines = (folder / "items.jsonl").read_text().splitlines()
        for line, key, value in edits:
            rec = json.loads(lines[line % len(lines)])
            if value is ...:  # the field dropped
                rec.pop(key, None)
            else:
                rec[key] = value
            lines[line % len(lines)] = json.dumps(rec)
        (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
        old = json.loads((folder / "summary.json").read_text())
        code = _check(["report", str(folder), "--combined", str(root / "out" / "all.md")], root,
                      [root / "out", folder], capsys, monkeypatch)
        new = json.loads((folder / "summary.json").read_text())
        from lmrep.records.rebuild import lost
        assert lost(old, new) is None, (edits, code, old, new)  # a summary never holds less than it did


@pytest.mark.slow
@pytest.mark.parametrize("many", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["quick", "many"])
def test_any_report_folder_keeps_the_contract(many, invert_run, capsys, monkeypatch):
    keys = st.sampled_from(["index", "prompt", "token_accuracy", "exact_match", "model", "loss_curve", "layer_name"])
    edit = st.tuples(st.integers(0, 1), keys | text, st.just(...) | junk_json)
    given(edits=st.lists(edit, max_size=3))(_examples(many)(lambda edits: _report(edits, invert_run, capsys,
                                                                                  monkeypatch)))()
