"""A walk run folder: the walks run into it as the engine's items (resuming what an earlier run of the same config
finished), and its summary and figure rebuilt from items.jsonl alone (no model needed)."""
from __future__ import annotations

from typing import Callable, Iterator

from ..engine import ITEMS, TENSOR_FIELD, ItemLog, item_id
from ..engine.command import batches, run_command
from ..errors import LmrepError
from ..models.load import LoadedModel
from ..objective.targets import make_target
from ..records.checks import krylov_fits
from ..records.folder import RunDir
from ..records.stats import mean_sem
from .config import WalkConfig
from .driver import walk_items
from .figures import walk_figure

SUMMARY_FIELDS = ("r", "r_random", "r_over_random", "input_distance", "output_distance")


def solve_walks(pool, units: list[tuple[list[int], int]], target, cfg: WalkConfig, progress: bool) -> Iterator[dict]:
    """One task: walks from (token ids, seed) units, batched; each record carries its start and end embeddings
    (T, d), stored in the run's tensors.safetensors as ``<id>/start`` and ``<id>/end``."""
    for res in walk_items(target, units, cfg, progress):
        yield dict(res.record, **{TENSOR_FIELD: dict(start=res.start, end=res.end)})


def run(run_dir: RunDir, target, prompts: list[str], cfg: WalkConfig, seeds: tuple[int, ...],
        progress: bool = True, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Walk from every (prompt, seed) the run folder has not finished, cfg.batch_size at a time (seed by seed,
    prompts in order); each walk one item of items.jsonl. ``on_record`` sees every walk's record, those finished
    earlier first; returns them all in order."""
    units = [(target.lm.encode(p), s) for s in seeds for p in prompts]
    keys = [item_id(f"seed={s}", j, p) for s in seeds for j, p in enumerate(prompts)]
    return run_command(run_dir, keys, lambda done: batches(solve_walks, (target, cfg, progress), keys, units,
                                                           cfg.batch_size, done),
                       rebuild_run, "walk", progress, on_record)


def walk_prompts(lm: LoadedModel, prompts: list[str], cfg: WalkConfig, layer: int | str, head: str = "none",
                 toy: str | None = None, seed: int = 0, seeds: tuple[int, ...] = (0,), untrained: bool = False,
                 dtype: str | None = None, out: str | None = None, new: bool = False,
                 on_record: Callable[[dict], None] | None = None, progress: bool = True) -> tuple[list[dict], RunDir]:
    """The walk command: walk from every prompt under every seed on layer ``layer`` (+ ``head``) of ``lm``, or on
    the page's MLP mimic (``toy="mlp"``, weights drawn under ``seed``), everything checked before any work; the run
    folder is made from the run's config (``untrained`` and ``dtype`` as asked for). Returns the records and the
    folder."""
    target = make_target(lm, layer, head, toy=toy, seed=seed)
    cfg.check(lm.vocab_size)
    tokens = min(len(lm.encode(p)) for p in prompts)  # every prompt is checked before any work starts
    if cfg.method == "jacobian":
        krylov_fits(cfg.directions, cfg.krylov, tokens * lm.d_model)
    config = dict(model=lm.name, trained=lm.trained, untrained=untrained, target=target.name, layer=layer,
                  head=head, toy=toy, dtype=dtype, prompts=prompts, seeds=list(seeds), **cfg.to_dict())
    run_dir = RunDir.create("walk", config, out, new=new)
    return run(run_dir, target, prompts, cfg, seeds, progress=progress, on_record=on_record), run_dir


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json (mean and standard error of r and the distances over walks; with --until-change, how many
    walks changed a token and at which steps) and walk.png; the summary."""
    records = ItemLog(run_dir).items()
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished walk ({ITEMS} is empty or missing): nothing to "
                         "report; rerun the command to resume it")
    summary = dict(walks=len(records), **{k: mean_sem(r.get(k) for r in records) for k in SUMMARY_FIELDS})
    if any(r.get("until_change") for r in records):  # how many reached another token within the cap, and when
        hit = sorted(r["first_change"] for r in records if r.get("first_change") is not None)
        summary.update(changed=len(hit), first_change=hit)
    run_dir.write_json("summary.json", summary)
    r0 = records[0]
    untrained = "" if r0.get("trained", True) else " (untrained)"
    walk_figure(records, run_dir / "walk.png", f"{r0['model']}{untrained} {r0['target']}: {r0['method']} walk")
    return summary
