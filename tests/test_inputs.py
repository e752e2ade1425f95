"""Bad input, by class: one line, exit code 2, no traceback, before any work starts.

The numeric, output-folder and help checks are built from the parsers themselves (every flag of every command),
so an option added later is covered without a new test.
"""
from __future__ import annotations

import argparse
import os

import pytest

from lmrep.records.checks import read_lines
from lmrep.cli import build_parser, main
from lmrep.errors import LmrepError

PARSER = build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
PLACEHOLDER = {"report": ["some-run"], "reproduce": ["depth"], "sweep": ["spec.toml"]}  # positionals a command needs to parse at all


def _flags():
    for name, sub in COMMANDS.items():
        for a in sub._actions:
            if a.option_strings and a.dest != "help":
                yield name, a


def _bad_numbers():
    """(command, flag, nargs, bad value) for every numeric flag: non-finite, not a number, below its lowest and
    above its highest value, and a fraction where a whole number is wanted."""
    for name, a in _flags():
        kind, check = getattr(a.type, "parse_as", None), getattr(a.type, "check", None)
        if kind not in (int, float):
            continue
        bad = ["nan", "inf", "-inf", "1e999", "ten"]
        low, high = getattr(check, "low", None), getattr(check, "high", None)
        if low is not None:
            bad.append(str(low - 1 if kind is int else (low if getattr(check, "low_open", False) else low - 1)))
        if high is not None:
            bad.append(str(high + 1))
        if kind is int:
            bad.append("1.5")
        for v in bad:
            yield name, a.option_strings[0], a.nargs, v


BAD_NUMBERS = list(_bad_numbers())


def _one_line_exit_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err, err
    return err


def test_every_numeric_option_has_a_range():
    numeric = [(n, a) for n, a in _flags()
               if getattr(a.type, "parse_as", None) in (int, float) or a.type in (int, float)]
    assert len(numeric) >= 30
    unchecked = [f"{n} {a.option_strings[0]}" for n, a in numeric if getattr(a.type, "check", None) is None]
    assert unchecked == []
    assert len(BAD_NUMBERS) >= 6 * len(numeric)


@pytest.mark.parametrize("command,flag,nargs,value", BAD_NUMBERS,
                         ids=[f"{c} {f} {v}" for c, f, _, v in BAD_NUMBERS])
def test_bad_numbers_are_refused_before_anything_runs(command, flag, nargs, value, capsys):
    count = nargs if isinstance(nargs, int) else 1
    err = _one_line_exit_2([command, *PLACEHOLDER.get(command, []), flag, *[value] * count], capsys)
    assert flag in err


def test_the_range_checks_accept_their_own_bounds():
    """The bounds the refusal test steps past are really the edges: the values at them pass."""
    for name, a in _flags():
        check = getattr(a.type, "check", None)
        low, high = getattr(check, "low", None), getattr(check, "high", None)
        if low is not None and not check.low_open:
            assert check(low) is None, (name, a.option_strings[0], low)
        if low is not None and check.low_open:
            assert check(low + 1e-9) is None, (name, a.option_strings[0], low)
        if high is not None:
            assert check(high) is None, (name, a.option_strings[0], high)


def test_every_option_has_help_and_shows_its_default():
    missing = []
    for name, a in _flags():
        text = a.help or ""
        flag_only = a.nargs == 0
        if not text or (not flag_only and "default" not in text and "%(default)" not in text):
            missing.append(f"{name} {a.option_strings[0]}")
    assert missing == []


def test_one_meaning_per_flag_name():
    """The same flag in two commands takes the same number and kind of values (--sigma is not one number here and
    two there; --seeds is a count everywhere)."""
    seen, clash = {}, []
    for name, a in _flags():
        kind = "flag" if a.nargs == 0 else ("choice" if a.choices else getattr(a.type, "kind", str).__name__)
        shape = (a.nargs, kind)
        first = seen.setdefault(a.option_strings[0], (name, shape))
        if first[1] != shape:
            clash.append(f"{a.option_strings[0]}: {first[0]} {first[1]} vs {name} {shape}")
    assert clash == []


@pytest.mark.parametrize("command", [n for n, s in COMMANDS.items()  # commands whose --out is a run folder
                                     if any("--out" in a.option_strings and "run folder" in (a.help or "")
                                            for a in s._actions)])
@pytest.mark.parametrize("where", ["file", "dev-null", "proc", "under-a-file", "unwritable"])
def test_out_that_cannot_hold_a_run_folder(command, where, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    out = {"file": str(f), "dev-null": "/dev/null", "proc": "/proc/lmrep-run", "under-a-file": str(f / "run"),
           "unwritable": str(locked / "run")}[where]
    if where == "unwritable" and os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    err = _one_line_exit_2([command, *PLACEHOLDER.get(command, []), "--out", out], capsys)
    assert "run folder" in err


@pytest.mark.parametrize("where", ["folder", "no-parent", "proc"])
def test_combined_report_that_cannot_be_written(where, tmp_path, capsys):
    out = {"folder": str(tmp_path), "no-parent": str(tmp_path / "missing" / "all.md"), "proc": "/proc/x.md"}[where]
    _one_line_exit_2(["report", str(tmp_path), "--combined", out], capsys)


TEXTS = {"binary": b"The sky\x00\x01\x02 is blue.\n", "latin-1": "Caf\xe9 au lait\n".encode("latin-1"),
         "utf-16": "The sky is blue.\n".encode("utf-16")}


@pytest.mark.parametrize("kind", list(TEXTS) + ["folder", "missing"])
def test_text_files_one_reader(kind, tmp_path):
    path = tmp_path / "prompts.txt"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        path.write_bytes(TEXTS[kind])
    with pytest.raises(LmrepError, match="prompts file"):
        read_lines(path, "prompts file")


def test_utf8_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffThe sky is blue.\n# a comment\n\nÜber alles\n".encode("utf-8"))
    assert read_lines(path, "prompts file") == ["The sky is blue.", "Über alles"]


@pytest.mark.parametrize("command", ["invert", "walk", "reproduce"])
@pytest.mark.parametrize("kind", list(TEXTS))
def test_every_prompts_file_option_reads_through_the_one_reader(command, kind, tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    path.write_bytes(TEXTS[kind])
    argv = [command, *(["depth"] if command == "reproduce" else []), "--prompts-file", str(path),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prompts file" in err
    assert not (tmp_path / "run").exists()


UNUSED = [
    (["walk", "hi", "--quick"], "--quick does nothing without --sweep"),
    (["walk", "--sweep", "--method", "jacobian"], "--method does nothing with --sweep"),
    (["walk", "hi", "--method", "jacobian", "--noise", "0.1"], "--noise does nothing"),
    (["invert", "hi", "--method", "exact", "--steps", "5"], "--steps does nothing"),
    (["invert", "hi", "--ranking", "table"], "--ranking does nothing"),
    (["invert", "hi", "--mix", "1", "1"], "--mix does nothing"),
    (["features", "--no-blur", "--blur-sigma", "1", "1"], "--blur-sigma does nothing"),
    (["reconstruct-image", "--compare", "none", "--compare-layers", "1"], "--compare-layers does nothing"),
    (["reproduce", "depth", "--quick", "--also", "gpt2"], "--also does nothing"),
    (["invert", "hi", "--steps", "10", "--snapshots", "99999"], "snapshots must be steps 0..10"),
    (["walk", "hi", "--steps", "3", "--snapshots", "5"], "snapshots must be steps 0..3"),
]


@pytest.mark.parametrize("argv,message", UNUSED, ids=[" ".join(a) for a, _ in UNUSED])
def test_an_option_that_does_nothing_is_refused(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["invert", "walk", "reproduce"])
def test_a_folder_that_is_not_a_model(command, tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    argv = [command, *(["depth", "--quick"] if command == "reproduce" else ["hi"]), "--model", str(folder),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a model" in err and "download" not in err and "hub" not in err, err
    assert not (tmp_path / "run").exists()


def test_every_model_is_checked_before_any_work(tmp_path, capsys):
    """The issue's case: an --also model that is not here was found only after minutes of work."""
    assert main(["reproduce", "sentence-reconstruction", "--quick", "--also", "someone/not-cached-here",
                 "--out", str(tmp_path / "run")]) == 2
    assert "cannot load model 'someone/not-cached-here'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
