"""Every code block of README.md and docs/*.md, so a documented example cannot rot.

Python blocks run as written, each in a fresh folder. Shell blocks: every `lmrep ...` line is parsed by the real
parser (a renamed or removed flag, a bad choice or an out-of-range number fails here), `make X` must name a
Makefile target and `python bench/X.py` an existing script; running them is for people (some take hours and say
so in their comment). Other fenced text (formulas, the layout) is left alone.
"""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from lmrep.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each fenced block."""
    text = path.read_text()
    return [(m.group(1), m.group(2), text[: m.start()].count("\n") + 1) for m in FENCE.finditer(text)]


PYTHON = [(p, code, n) for p in DOCS for lang, code, n in blocks(p) if lang == "python"]
SHELL = [(p, line.strip(), n) for p in DOCS for lang, code, n in blocks(p) if lang in ("", "sh")
         for line in code.splitlines() if re.match(r"(lmrep|make|python bench/|pip) ", line.strip())]


def test_the_docs_have_code_to_check():
    assert len(PYTHON) >= 4 and sum(line.startswith("lmrep ") for _, line, _ in SHELL) >= 20
    langs = {lang for p in DOCS for lang, _, _ in blocks(p)}
    assert langs <= {"", "sh", "python"}, langs  # a new kind of block needs a rule here


def asserts(code: str) -> int:
    """How many assert statements a block of Python has."""
    return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(code)))


@pytest.mark.slow  # each example loads a real-size model (GPT-2 small, SmolLM2, ViT-B/16) as its reader would
@pytest.mark.parametrize("path,code,line", PYTHON, ids=[f"{p.name}:{n}" for p, _, n in PYTHON])
def test_python_block_runs_and_checks_what_it_shows(path, code, line, tmp_path, monkeypatch):
    """Each example asserts the claim it illustrates (an example that only prints passes whatever it prints), and
    runs as written."""
    assert asserts(code) >= 1, f"{path.name}:{line}: the example asserts nothing; assert what it shows"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{path.name}:{line}", "exec"), {"__name__": "__docs__"})


def test_an_example_whose_claim_broke_fails():
    """The check above is not vacuous: a block whose assert is false raises, and a block without one is found."""
    assert asserts("x = 1\nprint(x)") == 0 and asserts("x = 1\nassert x == 1") == 1
    with pytest.raises(AssertionError):
        exec(compile("x = 1\nassert x == 2", "block", "exec"), {})


@pytest.mark.parametrize("path,command,line", SHELL, ids=[f"{p.name}:{n}:{c[:40]}" for p, c, n in SHELL])
def test_shell_line_is_a_real_command(path, command, line, capsys):
    argv = shlex.split(command, comments=True)
    if argv[0] == "lmrep":
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as e:
            pytest.fail(f"{path.name}:{line}: `{command}` does not parse: {capsys.readouterr().err.strip()} ({e})")
    elif argv[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert argv[1] in targets, f"{path.name}:{line}: no make target {argv[1]}"
    elif argv[0] == "python":
        assert (ROOT / argv[1]).is_file(), f"{path.name}:{line}: no script {argv[1]}"
    elif argv[0] == "pip":  # a package the set-up installs (Makefile) or an extra names (pyproject.toml)
        assert argv[1] == "install", f"{path.name}:{line}: `{command}`"
        installs = (ROOT / "Makefile").read_text() + (ROOT / "pyproject.toml").read_text()
        names = [a for a in argv[2:] if not a.startswith("-")]
        assert names and all(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", installs) for n in names), \
            f"{path.name}:{line}: `{command}` names a package the set-up does not install"
    else:
        pytest.fail(f"{path.name}:{line}: no rule for `{command}`")
