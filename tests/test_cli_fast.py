"""Fast, quiet refusals: every command's --help and every refused argument answer before torch (or transformers,
scipy, matplotlib, Ray) is imported, and the names the parser offers without them are the names the work knows."""
import argparse
import json
import subprocess
import sys

from lmrep.cli import build_parser
from lmrep.cli.parser import COMMANDS

HEAVY = ("torch", "transformers", "scipy", "matplotlib", "ray")
REQUIRED = {"capture": ["--out", "{tmp}/s.safetensors"], "sweep": ["spec.toml"], "report": ["some-run"]}
# refused by a command's own checks after parsing, before any work: (argv, what its one line names)
CHECKED = [(["invert", "x", "--mix", "0.5", "0.5"], "--mix"), (["invert", "x", "--layer", "auto"], "--layer auto"),
           (["capture", "x", "--out", "{tmp}/s.txt"], ".safetensors"), (["walk", "x", "--quick"], "--quick"),
           (["features", "--no-blur", "--blur-sigma", "1", "1"], "--blur-sigma"),
           (["reconstruct-image", "--compare", "none", "--compare-layers", "1"], "--compare-layers"),
           (["reproduce", "depth", "--prompts-file", "{tmp}/none.txt"], "prompts file"),
           (["reproduce", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
           (["sweep", "{tmp}/none.toml"], "not found"), (["sweep", "{tmp}/bad.toml"], "not valid TOML"),
           (["sweep", "{tmp}/keys.toml"], "unknown key 'grid.colour'"), (["sweep", "{tmp}/up.toml"], "'../x'"),
           (["sweep", "{tmp}/exp.toml"], "unknown experiment 'no-such'"),
           (["report", "{tmp}/none"], "not found"), (["report", "{tmp}"], "not a run folder"),
           (["invert", "--states", "{tmp}/none.npy", "--layer", "1"], "not found"),
           (["invert", "--states", "{tmp}/empty.npy", "--layer", "1"], "empty (0 bytes)"),
           (["invert", "--states", "{tmp}", "--layer", "1"], "is a folder"),
           (["reconstruct-image", "{tmp}/none.png"], "not found"),
           (["reconstruct-image", "{tmp}/bad.toml"], "cannot read image")]
# the files those cases read: each refused by a check that needs no model
FILES = {"bad.toml": "[grid\n", "keys.toml": '[grid]\ncolour = "red"\n', "empty.npy": "",
         "up.toml": '[grid]\nname = "../x"\nmodels = ["gpt2"]\nprompts = ["a"]\n',
         "exp.toml": '[reproduce]\nexperiments = ["no-such"]\n'}

# main() over each argv in one fresh process: its exit code and what it wrote, then the heavy modules loaded
RUN = """
import contextlib, io, json, sys
from lmrep.cli import main
cases, heavy = json.loads(sys.argv[1]), sys.argv[2].split(",")
seen = []
for argv in cases:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    seen.append(dict(argv=argv, code=code, out=out.getvalue(), err=err.getvalue()))
print(json.dumps(dict(seen=seen, loaded=[m for m in heavy if m in sys.modules])))
"""


def _flags(command: str) -> list[argparse.Action]:
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if a.option_strings and a.nargs is None]


def _bad_number(action: argparse.Action) -> str | None:
    """A value that the flag's own check refuses, if the flag takes a number."""
    if getattr(action.type, "parse_as", None) not in (int, float):
        return None
    for text in ("-1", "0", "nan", "1e309"):
        try:
            action.type(text)
        except argparse.ArgumentTypeError:
            return text
    return None


def _refusals(command: str, tmp) -> list[tuple[list[str], str]]:
    """(argv, the flag its one line must name): an unknown flag, and the command's first numeric flag with a value
    its check refuses and its first flag of choices with a value not among them, where it has such flags."""
    given = [a.format(tmp=tmp) for a in REQUIRED.get(command, [])]
    cases = [([command, *given, "--no-such-flag"], "--no-such-flag")]
    numbers = [(a.option_strings[0], _bad_number(a)) for a in _flags(command) if _bad_number(a)]
    choices = [a.option_strings[0] for a in _flags(command) if a.choices]
    cases += [([command, *given, flag, value], flag) for flag, value in numbers[:1]]
    cases += [([command, *given, flag, "no-such-choice"], flag) for flag in choices[:1]]
    return cases


def test_help_and_refusals_of_every_command_load_no_heavy_library(tmp_path):
    """--help, what the parser refuses and what a command's checks refuse before its work, in one fresh process."""
    helps = [[command, "--help"] for command in COMMANDS]
    refusals = [case for command in COMMANDS for case in _refusals(command, tmp_path)]
    assert {argv[0] for argv, _ in refusals} == set(COMMANDS)
    choices = sum(argv[-1] == "no-such-choice" for argv, _ in refusals)
    assert choices >= 5 and len(refusals) - len(COMMANDS) - choices >= 5  # bad numbers and choices were found
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    refusals += [([a.format(tmp=tmp_path) for a in argv], words) for argv, words in CHECKED]
    argvs = helps + [argv for argv, _ in refusals]
    p = subprocess.run([sys.executable, "-c", RUN, json.dumps(argvs), ",".join(HEAVY)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["loaded"] == []  # the property: parsing and checking the arguments imports none of HEAVY
    seen = report["seen"]
    for run, argv in zip(seen, helps):
        assert run["code"] == 0 and run["out"].startswith(f"usage: lmrep {argv[0]}"), run
    for run, (argv, flag) in zip(seen[len(helps):], refusals):
        lines = run["err"].splitlines()
        assert run["code"] == 2 and len(lines) == 1, run
        assert lines[0].startswith("lmrep") and ": error: " in lines[0] and flag in lines[0], run


def test_the_names_offered_before_torch_are_the_names_the_work_knows():
    """Each table of names that a config checks without torch names exactly what the code behind it builds."""
    from lmrep.inversion.registry import MODULES as INVERSIONS, all_methods
    from lmrep.vision.config import OBJECTIVE_KINDS, PARAM_KINDS
    from lmrep.vision.objectives import OBJECTIVES
    from lmrep.vision.param import PARAMS
    from lmrep.walks.registry import MODULES as WALKS, move
    assert sorted(all_methods()) == sorted(INVERSIONS)
    assert all(callable(move(name)) for name in WALKS)
    assert set(OBJECTIVES) == set(OBJECTIVE_KINDS) and set(PARAMS) == set(PARAM_KINDS)
