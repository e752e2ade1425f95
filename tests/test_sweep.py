"""lmrep sweep: a spec is checked whole before work starts; the same tiny sweep gives the same items in this process,
in local worker processes and on Ray, even when a worker is killed mid-sweep or the driver is interrupted."""
from __future__ import annotations

import json
import shutil
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from lmrep.cli import main
from lmrep.engine import ITEMS, Inline, execute
from lmrep.experiments import experiments
from lmrep.experiments.local import LocalExecutor
from lmrep.experiments.pool import ModelPool
from lmrep.experiments.sweep import load_spec, sweep_jobs

DOCS = Path(__file__).resolve().parent.parent / "docs"
TINY = DOCS / "sweep-tiny.toml"  # 2 layers x 2 prompts x 1 seed of untrained GPT-2, 10 steps: the documented example
TIMING = ("seconds",)  # wall time: the one field that may differ between runs
# every run here uses one torch thread: float sums (and so the last bits of distances) depend on the thread count


def loopback_only() -> bool:
    """Whether this process sees no network but loopback (where Ray may start: make test runs the suite so)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def items(run: Path) -> dict[str, dict]:
    lines = (run / ITEMS).read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), "an item was written twice"
    return {r["id"]: {k: v for k, v in r.items() if k not in TIMING} for r in recs}


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tiny_gpt2_dir) -> Path:
    """The documented tiny sweep on a small GPT-2 folder: the workers the tests start and kill load it in a moment
    (the documented file itself runs in test_the_documented_tiny_sweep_runs)."""
    folder = tmp_path_factory.mktemp("spec")
    shutil.copytree(tiny_gpt2_dir, folder / "tiny-gpt2")  # a model folder a spec names sits beside it
    text = TINY.read_text().replace('{name = "gpt2", untrained = true}', '{name = "tiny-gpt2"}')
    assert "tiny-gpt2" in text
    (folder / "tiny.toml").write_text(text)
    return folder / "tiny.toml"


def test_the_documented_specs_are_the_files_and_check(monkeypatch):
    def no_weights(*a, **k):
        raise AssertionError("checking a spec loaded a model's weights")
    monkeypatch.setattr("lmrep.models.load.load_model", no_weights)  # layers come from the config files
    monkeypatch.setattr("lmrep.experiments.pool.load_model", no_weights)
    doc = (DOCS / "sweep.md").read_text()
    spec_lines = [line for line in TINY.read_text().splitlines() if line and not line.startswith("#")]
    assert "\n".join(spec_lines) in doc  # the spec shown is the one the tests run
    full = load_spec(DOCS / "sweep-results.toml")
    names = [n for n, _ in full.runs]
    assert {"depth", "threshold", "walks", "depth-grid"} <= set(names)
    grid = dict(full.runs)["depth-grid"]
    assert [m["layers"] for m in grid.models] == [list(range(31)), list(range(13))] and len(grid.prompts) >= 20
    (_, bench), = load_spec(DOCS.parent / "bench" / "sweep.toml").runs  # items/hour in the docs
    assert len(bench.prompts) == 8 and bench.seeds == [0, 1] and bench.options == {"steps": 100}
    results = dict(load_spec(DOCS.parent / "results" / "spec.toml").runs)  # the committed results
    assert set(results) == set(experiments()) and {c.steps for c in results.values()} == {200}
    assert results["depth"].layers == (0, 1, 2, 4, 8, 12, 16, 23, 30) and results["depth"].seeds == 2


def test_the_decisive_spec_runs_both_settings_on_the_evaluation_set():
    from lmrep.experiments.claims import MIN_N
    from lmrep.experiments.config import PAGE_PROMPT, SKY_PROMPT
    runs = dict(load_spec(DOCS.parent / "results" / "decisive.toml").runs)
    assert {c.setting for c in runs.values()} == {"original", "tuned"}
    assert {n.removesuffix("-tuned") for n in runs} == {"threshold", "depth", "sentence-reconstruction",
                                                         "token-mapping"}
    for name, cfg in runs.items():
        assert cfg.prompts[:2] == (PAGE_PROMPT, SKY_PROMPT) and len(cfg.prompts) * cfg.seeds >= 3 * MIN_N, name
    assert runs["threshold"].steps == runs["threshold-tuned"].steps == 0  # the page's N: its claims are about steps
    assert runs["depth"].layers == (1, 12, 30)  # the blocks the depth claims compare


@pytest.fixture(scope="module")
def planner() -> ModelPool:
    return ModelPool("cpu")


def _inline(spec: Path, planner: ModelPool, out: Path) -> dict[str, dict]:
    top, dirs, jobs = sweep_jobs(load_spec(spec, out), planner)
    with torch_threads(1):
        assert execute(jobs, Inline(planner), progress=False).ok
    got = items(dirs["grid"].path)
    assert len(got) == 4 and {r["depth"] for r in got.values()} == {1, 2}
    assert {r["prompt"] for r in got.values()} == {"The sky is blue.", "This is a prompt sentence."}
    return got


@pytest.fixture(scope="module")
def reference(spec, planner, tmp_path_factory) -> dict[str, dict]:
    """The tiny sweep run in this process."""
    return _inline(spec, planner, tmp_path_factory.mktemp("inline"))


@pytest.fixture(scope="module")
def documented(planner, tmp_path_factory) -> dict[str, dict]:
    """The documented tiny sweep (untrained GPT-2) run in this process."""
    return _inline(TINY, planner, tmp_path_factory.mktemp("documented"))


@pytest.mark.slow
def test_the_documented_tiny_sweep_runs(documented):
    assert all(r["model"] == "gpt2" and 0 < r["loss_best"] <= r["loss_start"] for r in documented.values())


@pytest.mark.parametrize("bad, says", [
    ("[grid]\nmodels = ['gpt2']\nprompts = ['a b']\nstepz = 3\n", "unknown key 'grid.stepz'"),
    ("[grid]\nmodels = ['no-such-model']\nprompts = ['a b']\n", "model 'no-such-model'"),
    ("[grid]\nmodels = [{name = 'gpt2', untrained = true}]\nmethods = ['gd', 'magic']\nprompts = ['a']\n",
     "unknown method 'magic'"),
    ("[reproduce]\nexperiments = ['depth', 'nope']\n", "unknown experiment 'nope'"),
    ("[reproduce]\nexperiments = 'depth'\nsteps = -1\n", "reproduce: steps must be 0 or more, up to 1000000, got -1"),
    ("[reproduce]\nexperiments = 'depth'\nlayers = [1, 'x']\n", "reproduce: layers must be 0 or more, up to 10000000 each"),
    ("[reproduce]\nexperiments = 'depth'\nquick = 'yes'\n", "reproduce: quick must be true or false"),
    ("out = 'x'\n[grid\n", "not valid TOML"),
    ("[grid]\nmodels = [{name = 'gpt2', untrained = true}]\nprompts = ['a']\nlayers = [13]\n", "blocks 0..12"),
    ("[reproduce]\nexperiments = 'depth'\nlayers = [1, 31]\n", "blocks 0..30 of smollm2-135m"),
])
def test_bad_spec_is_one_line_exit_2_before_any_work(tmp_path, capsys, bad, says):
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and err[0].startswith("lmrep sweep: error:")
    assert not (tmp_path / "out").exists()  # nothing ran, no folder was made


def test_local_workers_give_the_same_items_with_a_worker_killed(spec, planner, reference, tmp_path):
    top, dirs, jobs = sweep_jobs(load_spec(spec, tmp_path / "local"), planner)
    ex = LocalExecutor(workers=1, threads=1)
    killed = []

    def kill_at_first_item(ev):
        if ev.kind == "item" and not killed:
            killed.append(ex.pids(busy=False)[0])
            os.kill(killed[0], signal.SIGKILL)  # mid-sweep: the other task has not run yet
    assert execute(jobs, ex, progress=False, on_event=kill_at_first_item).ok
    assert killed and items(dirs["grid"].path) == reference  # every item exactly once, the same numbers


@pytest.mark.ray
@pytest.mark.skipif(not loopback_only(), reason="Ray starts only where the network is loopback alone (make test)")
def test_ray_gives_the_same_items_with_a_worker_killed(documented, tmp_path):
    import ray

    from lmrep.experiments.cluster import RayExecutor
    ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        # the documented spec: its workers build GPT-2 for seconds after the task started, time to kill one there
        top, dirs, jobs = sweep_jobs(load_spec(TINY, tmp_path / "ray"), ModelPool("cpu"))
        killed, stop = [], threading.Event()
        ex = RayExecutor()

        def killer():  # the first task's worker, once its attempt started, while it builds GPT-2: Ray runs it again
            while not stop.is_set() and not ray.get(ex.attempts.started.remote()):
                time.sleep(0.1)
            while not stop.is_set() and not killed:
                for pid in Path("/proc").iterdir():
                    try:
                        if pid.name.isdigit() and (pid / "cmdline").read_bytes().startswith(b"ray::lmrep_task"):
                            os.kill(int(pid.name), signal.SIGKILL)
                            killed.append(int(pid.name))
                            break
                    except OSError:
                        continue
                time.sleep(0.2)
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        retried = []
        outcome = execute(jobs, ex, progress=False, on_event=lambda ev: ev.kind == "retry" and retried.append(ev))
        stop.set()
        assert outcome.ok and killed and retried
        assert items(dirs["grid"].path) == documented
    finally:
        ray.shutdown()


@contextmanager
def ctrl_c_interrupts():
    """SIGINT raises KeyboardInterrupt, as in a terminal, whatever this process was started with: started with
    SIGINT ignored (a background job, nohup, some CI runners) Python installs no handler and Ctrl-C does nothing."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_interrupted_driver_resumes(spec, planner, reference, tmp_path):
    sweep = load_spec(spec, tmp_path / "resumed")
    top, dirs, jobs = sweep_jobs(sweep, planner)
    ex = LocalExecutor(workers=1, threads=1)

    def ctrl_c(ev):  # a real SIGINT to the driver, as the terminal sends it, once the first item is written
        if ev.kind == "item":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal is delivered here, in the driver's loop
    with ctrl_c_interrupts(), pytest.raises(KeyboardInterrupt):
        execute(jobs, ex, progress=False, on_event=ctrl_c)
    assert not any(p.is_alive() for p in ex.procs)  # the workers went with the driver
    written = (dirs["grid"] / ITEMS).read_text()
    assert written.endswith("\n") and 1 <= written.count("\n") < 4  # whole lines; the sweep was not finished
    top, dirs, jobs = sweep_jobs(sweep, planner)  # the same command again
    with torch_threads(1):
        assert execute(jobs, Inline(planner), progress=False).ok
    assert items(dirs["grid"].path) == reference


@pytest.mark.parametrize("steps", [0, 7, -1, 10 ** 7])
def test_a_field_means_the_same_on_the_command_line_and_in_a_spec(tmp_path, capsys, steps):
    """ReproduceConfig's fields carry their own range: `--steps N` and `steps = N` in a spec give the same config,
    or are refused with the same words."""
    from lmrep.cli import build_parser
    from lmrep.cli.reproduce import config_of
    from lmrep.errors import LmrepError
    spec = tmp_path / "s.toml"
    spec.write_text(f"[reproduce]\nexperiments = 'depth'\nsteps = {steps}\nseeds = 2\n")
    try:
        cli = config_of(build_parser().parse_args(["reproduce", "depth", "--steps", str(steps), "--seeds", "2"]))
    except SystemExit:
        cli = capsys.readouterr().err
    try:
        (name, from_spec), = load_spec(spec).runs
    except LmrepError as e:
        from_spec = str(e)
    if 0 <= steps <= 10 ** 6:
        assert name == "depth" and cli.resolved() == from_spec and from_spec.steps == steps
    else:
        assert isinstance(cli, str) and isinstance(from_spec, str)
        assert "steps must be 0 or more, up to 1000000" in from_spec and "must be 0 or more, up to 1000000" in cli
