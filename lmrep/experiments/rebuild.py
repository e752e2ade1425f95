"""Rebuilding any run folder's summary, figures (and report.md) from its files alone, by the kind of run its
config.json names: experiments and sweeps here, the commands' runs by their own packages' functions."""
from __future__ import annotations

from typing import Callable

from ..errors import LmrepError
from ..records.folder import RunDir
from .combine import FOLDERS_OF_RUNS, combine, experiment_name, runs_in
from ..engine import ItemLog, check_format
from .registry import planned


def rebuild_experiment(run_dir: RunDir) -> str:
    """Rebuild a reproduce or sweep run folder's summary, figures and report.md from its JSON alone (no model is
    loaded)."""
    name = experiment_name(run_dir)
    if name not in FOLDERS_OF_RUNS:
        return planned(name).write_report(run_dir)
    subs = runs_in(run_dir)
    if not subs:
        raise LmrepError(f"'{run_dir.path}' holds no experiment's folder yet: nothing to report")
    for d in subs:
        rebuild_experiment(d)
    return combine(subs, run_dir / "report.md")


def report_runs(run_dirs: list[RunDir], combined=None) -> None:
    """Rebuild the report of each run that has items, and (given a path) one combined report of them."""
    done = [d for d in run_dirs if ItemLog(d).done]
    for d in done:
        rebuild_experiment(d)
    if done and combined is not None:
        combine(done, combined)


def reporters() -> dict[str, Callable[[RunDir], object]]:
    """How each kind of run folder is rebuilt from its files alone, by the "command" its config.json names;
    ``reproduce-<experiment>`` folders are the experiments' (``rebuild_experiment``). Add a kind here."""
    from ..inversion.report import rebuild_run as invert_report
    from ..vision.features import rebuild_run as features_report
    from ..vision.reconstruct import rebuild_run as reconstruct_report
    from ..walks.report import rebuild_run as walk_report
    return {"invert": invert_report, "walk": walk_report, "features": features_report,
            "reconstruct-image": reconstruct_report}


def reporter(run_dir: RunDir) -> Callable[[RunDir], object]:
    """The function that rebuilds this run folder, once it is checked to be a run of a kind lmrep knows (one line
    if it is not: no folder, no or a damaged config.json, an unknown kind)."""
    if run_dir.path.is_file():
        capture = run_dir.path.suffix == ".safetensors"  # lmrep capture writes one states file, not a run folder
        raise LmrepError(f"'{run_dir.path}' is a file, not a run folder: " + (
            f"invert the states in it with lmrep invert --states '{run_dir.path}'" if capture else
            "give a folder an lmrep command wrote"))
    if not run_dir.path.is_dir():
        raise LmrepError(f"run folder '{run_dir.path}' not found: give a folder an lmrep command wrote")
    if not (run_dir / "config.json").exists():
        raise LmrepError(f"'{run_dir.path}' is not a run folder (no config.json): give a folder an lmrep command "
                         "wrote")
    command = run_dir.config()["command"]
    check_format(run_dir)
    if command.startswith(("reproduce-", "sweep")):
        return rebuild_experiment
    known = reporters()
    if command not in known:
        raise LmrepError(f"'{run_dir.path}' holds a run of kind '{command}', which lmrep report does not know: "
                         f"it rebuilds {', '.join(known)}, reproduce and sweep runs")
    return known[command]


def rebuild_any(run_dir: RunDir) -> None:
    """Rebuild any lmrep run folder's summary and figures (and report.md for experiments) from its files alone;
    files that are incomplete or from another version give one line."""
    build = reporter(run_dir)
    try:
        build(run_dir)
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
        raise LmrepError(f"cannot rebuild '{run_dir.path}': its files are incomplete or from another version "
                         f"({type(e).__name__}: {str(e)[:80]})") from None
