"""``lmrep sweep SPEC.toml``: grids and the page's experiments from one file, run together by one executor.

The spec (TOML) has ``[grid]`` tables (or ``[[grid]]`` for several) of models x layers x methods x prompts x seeds x
invert options, and ``[reproduce]`` tables naming the page's experiments with their settings. Every table becomes
a run folder under the sweep's folder; every item of every run is one task's output, so a cluster runs them all at
once. The whole spec is checked before anything runs: an unknown key, model, method, experiment or value is one
line (LmrepError). What the checks read that needs no weights (the file, its keys, names, the files it names) is
checked before torch is imported; models, layers and the device after.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LmrepError
from ..inversion.config import InvertConfig
from ..inversion.registry import method_names
from ..models.names import HEADS
from ..records.checks import SEED_MAX, SEEDS_MAX, from_mapping, label, seed_value, seeds_count
from ..records.inputs import SpecFolder, shown, single_name
from ..records.folder import RunDir, config_hash
from .registry import MODULES as EXPERIMENTS, known, planned
from .config import DEFAULT_SETTING, ReproduceConfig, read_prompt_file

if TYPE_CHECKING:
    from .grid import GridConfig
    from .pool import ModelPool

TOP = ("out", "device", "grid", "reproduce")
GRID = ("name", "models", "layers", "head", "methods", "prompts", "prompts_file", "seeds")
OPTIONS = tuple(f.name for f in fields(InvertConfig) if f.name not in ("method", "seed"))
REPRODUCE = ("experiments", "prompts_file",
             *(label(f) for f in fields(ReproduceConfig) if f.name not in ("experiment", "device")))


@dataclass
class Sweep:
    """A checked spec: where it runs, and each run folder's name and config."""

    out: Path
    device: str
    runs: list[tuple[str, object]]  # (subfolder, GridConfig | ReproduceConfig)


def load_spec(path: str | Path, out: str | None = None, device: str | None = None, allow: tuple = ()) -> Sweep:
    """Read and check a spec; ``out``/``device`` override its own. No weights are loaded: names are checked
    against the registries, layers against each model's config file. The files it names must be in its folder,
    or in ``allow`` (given on the command line)."""
    path = Path(path)
    if not path.is_file():
        raise LmrepError(f"sweep spec '{path}' not found: give a TOML file (see docs/sweep.md)")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LmrepError(f"{path}: not valid TOML ({e})") from None
    _known(spec, TOP, path, "")
    if "grid" not in spec and "reproduce" not in spec:
        raise LmrepError(f"{path}: nothing to run: add a [grid] or a [reproduce] table (see docs/sweep.md)")
    dev = device or _typed(spec.get("device", "cpu"), str, path, "device")
    base = SpecFolder(path, allow)
    runs: list[tuple[str, object]] = []
    for j, table in enumerate(_tables(spec, "grid", path)):
        _known(table, GRID + OPTIONS, path, "grid.")
        name = single_name(table["name"], f"{path}: grid.name") if "name" in table else \
            ("grid" if j == 0 else f"grid-{j + 1}")
        runs.append((name, (table, base)))
    for table in _tables(spec, "reproduce", path):
        _known(table, REPRODUCE, path, "reproduce.")
        runs += [(name, cfg) for name, cfg in _reproduce_configs(table, dev, base, path)]
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise LmrepError(f"{path}: two runs would share a folder name ({', '.join(names)}): give each [[grid]] a "
                         "name, or each [[reproduce]] its own experiments or setting")
    from ..models.load import resolve_device
    try:
        resolve_device(dev)  # a device this machine has, checked here on the driver before any work
    except LmrepError as e:
        raise LmrepError(f"{path}: {e}") from None
    runs = [(n, _grid_config(*c, dev, path) if isinstance(c, tuple) else c) for n, c in runs]
    # like every run folder, the default one is named by what it holds
    named = base.out(spec["out"]) if "out" in spec and not out else None
    out_dir = Path(out or named or Path("runs") / f"sweep-{config_hash({n: c.to_dict() for n, c in runs})}")
    return Sweep(out_dir, dev, runs)


def _known(table: dict, keys: tuple[str, ...], path: Path, where: str) -> None:
    if not isinstance(table, dict):
        raise LmrepError(f"{path}: '{where.rstrip('.')}' must be a table")
    for k in table:
        if k not in keys:
            raise LmrepError(f"{path}: unknown key '{where}{k}': known keys are {', '.join(keys)}")


def _typed(value, want: type, path: Path, key: str):
    if not isinstance(value, want) or isinstance(value, bool) and want is not bool:
        raise LmrepError(f"{path}: '{key}' must be a {want.__name__}, got {value!r}")
    return value


def _tables(spec: dict, key: str, path: Path) -> list[dict]:
    value = spec.get(key, [])
    return [value] if isinstance(value, dict) else list(value)


def _prompts(table: dict, base: SpecFolder, path: Path, where: str) -> tuple[str, ...]:
    prompts = list(table.get("prompts", []))
    if "prompts_file" in table:
        prompts += read_prompt_file(base.file(table["prompts_file"], f"{where}prompts_file"))
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise LmrepError(f"{path}: '{where}prompts' must be non-empty strings")
    return tuple(prompts)


def _seeds(value, path: Path, where: str) -> list[int]:
    """An int n (seeds 0..n-1) or a list of seeds."""
    count = isinstance(value, int) and not isinstance(value, bool)
    if count and seeds_count(value) or isinstance(value, list) and len(value) > SEEDS_MAX:
        raise LmrepError(f"{path}: '{where}seeds' must be a count of 1 to {SEEDS_MAX} or a list of at most "
                         f"{SEEDS_MAX} seeds, got {shown(value)}")
    seeds = list(range(value)) if count else value
    if not isinstance(seeds, list) or not seeds or any(seed_value(s) for s in seeds):
        raise LmrepError(f"{path}: '{where}seeds' must be a positive count or a list of seeds 0..{SEED_MAX}, got "
                         f"{shown(value)}")
    return seeds


def _check_spec_model(name: str, untrained: bool, path: Path) -> None:
    """A model the sweep can load (models.check_loadable: cheap, no weights read), the spec named in the error."""
    from ..models.load import check_loadable
    try:
        check_loadable(name, untrained)
    except LmrepError as e:
        raise LmrepError(f"{path}: {e}") from None


def _grid_config(table: dict, base: SpecFolder, device: str, path: Path) -> GridConfig:
    from ..models.shape import n_blocks
    from .grid import GridConfig
    methods = table.get("methods", ["gd"])
    for m in methods:
        if m not in method_names():
            raise LmrepError(f"{path}: unknown method '{m}' in grid.methods: choose from {', '.join(method_names())}")
    head = table.get("head", "none")
    if head not in HEADS:
        raise LmrepError(f"{path}: unknown head '{head}': choose one of {', '.join(HEADS)}")
    options = dict((k, table[k]) for k in OPTIONS if k in table)
    prompts = _prompts(table, base, path, "grid.")
    if not prompts:
        raise LmrepError(f"{path}: the grid has no prompts: add grid.prompts or grid.prompts_file")
    models = []
    for m in table.get("models", []) or []:
        name, untrained = (m, False) if isinstance(m, str) else (m.get("name"), bool(m.get("untrained", False)))
        name = base.model(name, "grid.models")
        if not isinstance(name, str) or (isinstance(m, dict) and set(m) - {"name", "untrained"}):
            raise LmrepError(f"{path}: a grid model is a name or {{name = \"...\", untrained = true}}, got {m!r}")
        _check_spec_model(name, untrained, path)
        models.append(dict(name=name, untrained=untrained))
    if not models:
        raise LmrepError(f"{path}: the grid has no models: add grid.models")
    cfg = GridConfig([], list(prompts), list(methods), head, _seeds(table.get("seeds", 1), path, "grid."),
                     options, device)
    for variant in cfg.variants():  # every option value is checked by the check the invert command uses
        for method in methods:
            try:
                cfg.invert_config(method, 0, variant)  # made is checked (InvertConfig.check)
            except (TypeError, LmrepError) as e:
                raise LmrepError(f"{path}: grid options: {e}") from None
    cfg.models = [dict(m, layers=_layers(table.get("layers", [1]), n_blocks(m["name"], m["untrained"]), path))
                  for m in models]
    return cfg


def _layers(value, n_layers: int, path: Path) -> list[int]:
    layers = list(range(n_layers + 1)) if value == "all" else value
    if not isinstance(layers, list) or not layers or \
            any(not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n_layers for k in layers):
        raise LmrepError(f"{path}: 'grid.layers' must be \"all\" or a list of blocks 0..{n_layers}, got {value!r}")
    return layers


def _reproduce_configs(table: dict, device: str, base: SpecFolder, path: Path):
    """Each experiment of a [reproduce] table with its config: the table's keys are ReproduceConfig's fields
    (checked by the fields' own checks, as the command line's flags are), plus ``experiments`` and
    ``prompts_file``."""
    names = table.get("experiments", ["all"])
    names = [names] if isinstance(names, str) else names
    names = list(EXPERIMENTS) if names == ["all"] else names
    for n in names:
        known(n if isinstance(n, str) else repr(n), alone=False)  # an unknown experiment: one line naming the known ones
    fields = {k: v for k, v in table.items() if k not in ("experiments", "prompts_file", "prompts")}
    if "model" in fields:
        fields["model"] = base.model(fields["model"], "reproduce.model")
    try:
        cfg = from_mapping(ReproduceConfig, fields, device=device, prompts=_prompts(table, base, path, "reproduce."))
    except LmrepError as e:
        raise LmrepError(f"{path}: reproduce: {e}") from None
    _check_spec_model(cfg.model, False, path)
    from ..models.shape import n_blocks
    if cfg.layers and max(cfg.layers) > n_blocks(cfg.model):
        raise LmrepError(f"{path}: reproduce: layers must be blocks 0..{n_blocks(cfg.model)} of {cfg.model}, got "
                         f"{list(cfg.layers)}")
    for n in names:
        yield (n if cfg.setting == DEFAULT_SETTING else f"{n}-{cfg.setting}"), \
            replace(cfg, experiment=n).resolved()


def sweep_jobs(sweep: Sweep, planner: ModelPool, new: bool = False) -> tuple[RunDir, dict[str, RunDir], list]:
    """The sweep's folder (``new``: a fresh one beside it if it holds another sweep), each run's folder and each
    run's plan as a job for ``engine.execute``."""
    top = RunDir.create("sweep", dict(runs={n: c.to_dict() for n, c in sweep.runs}), sweep.out, new=new)
    dirs = {n: RunDir.create(f"sweep-{n}", c.to_dict(), top / n) for n, c in sweep.runs}
    return top, dirs, [planned(c.experiment).job(dirs[n], c, planner) for n, c in sweep.runs]


def run_sweep(sweep: Sweep, executor: str = "local", workers: int | None = None, address: str | None = None,
              progress: bool = True, pool: ModelPool | None = None, new: bool = False) -> RunDir:
    """Run every run of the sweep together (resuming what finished before) and write each report."""
    from .executors import make_executor
    from .pool import ModelPool
    from .reproduce import run_and_report
    top, dirs, jobs = sweep_jobs(sweep, pool or ModelPool("cpu"), new)
    run_and_report(jobs, make_executor(executor, sweep.device, workers, address, pool=pool), list(dirs.values()),
                   top / "report.md", progress, "sweep")
    return top
