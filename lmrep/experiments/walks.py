"""Manifold walks, measured: r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1 of the clamped walk against inner steps, and
the Jacobian walk against the page's tangent walk at equal output change.

Subjects: 12 untrained GPT-2 blocks without head (the page's "12-block transformer"), the page's MLP mimic over the
same embeddings, and 12 blocks of the trained default model. Per subject the clamped walk's learning rate is first
tuned on a small grid (the page tunes eta, epsilon and N; the grid and its results are recorded), then held fixed
while the inner steps vary; then the clamped walk goes on until a decoded token changes (the page: "choose N, eta,
epsilon such that e_N corresponds to different input tokens"), its noise a multiple of the embeddings' scale, and r
at that round is set against a random move of the same size. Every walk is one JSON line in items.jsonl
(resumable); the report is built from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from ..objective.targets import make_target
from ..walks import WalkConfig, walk_items
from . import reporting, walks_report
from .config import ReproduceConfig
from ..engine import Plan, Task, item_id
from .pool import ModelPool

NAME = "walks"
ABOUT = "manifold walks: r against inner steps (clamped walk); Jacobian walk against the page's tangent walk"
TITLE = "Manifold walks"
DEFAULT_PROMPTS = ("The sky is blue.", "This is a prompt sentence.", "The cat sat on the mat.",
                   "Water boils at one hundred degrees.", "She opened the door slowly.",
                   "Paris is the capital of France.", "The train leaves at noon.", "Birds fly south in winter.",
                   "He plays the guitar every day.", "The market closed early today.")


@dataclass(frozen=True)
class Subject:
    key: str
    name: str
    model: str | None  # None: the run's trained model
    untrained: bool
    toy: str | None = None  # None: the first ``Profile.depth`` blocks of the model, no head

    def label(self, depth: int) -> str:
        return self.name if self.toy else f"{self.name}, {depth} blocks"


SUBJECTS = (Subject("gpt2-untrained", "GPT-2 untrained", "gpt2", True),
            Subject("mlp-mimic", "MLP mimic d->4d->d", "gpt2", True, "mlp"),
            Subject("smollm2", "SmolLM2-135M trained", None, False))


@dataclass(frozen=True)
class Profile:
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    depth: int  # blocks of the transformers (the page's 12; the quick profile runs 2)
    rounds: int  # clamped-walk rounds N
    inner: tuple[int, ...]  # inner steps swept
    lr_grid: tuple[float, ...]  # clamped-walk lr candidates (the scripts' 2e-5 and smaller)
    tune_prompts: int  # prompts (seed 0) the lr is tuned on, with inner = tune_inner
    tune_inner: int
    compare_steps: int  # moves of the tangent and Jacobian walks
    compare_prompts: int  # prompts for the comparison on transformers (all for the MLP), every seed: 7 x 3 seeds
    # is the fewest pairs a paired claim decides on (21 >= 20)
    directions: int
    krylov: int
    batch_size: int
    long_steps: int  # a long Jacobian walk on the trained model (first prompts, seed 0), decoded as it goes
    long_step_size: float
    long_prompts: int
    change_rounds: int  # the walk until a token changes: the rounds' cap (a walk that never changed is censored)
    change_inner: int
    change_noise: float  # its noise per round, in units of the embedding matrix's RMS entry (models differ ~7x)


def profile(quick: bool, seeds: int, prompts: list[str]) -> Profile:
    """quick: a few minutes on two CPU cores; full: >= 10 prompts x 3 seeds (at most 10 prompts are used)."""
    prompts = tuple(prompts or DEFAULT_PROMPTS)
    if quick:
        return Profile(prompts[:2], tuple(range(seeds or 1)), depth=2, rounds=2, inner=(1, 5), lr_grid=(2e-5,),
                       tune_prompts=1, tune_inner=1, compare_steps=2, compare_prompts=2, directions=2, krylov=2,
                       batch_size=8, long_steps=2, long_step_size=0.05, long_prompts=1, change_rounds=10,
                       change_inner=1, change_noise=1.0)
    return Profile(prompts[:10], tuple(range(seeds or 3)), depth=12, rounds=2, inner=(1, 10, 50),
                   lr_grid=(2e-10, 2e-9, 2e-8, 2e-7, 2e-6, 2e-5), tune_prompts=2, tune_inner=10, compare_steps=6,
                   compare_prompts=7, directions=4, krylov=3, batch_size=30, long_steps=12, long_step_size=0.05,
                   long_prompts=2, change_rounds=100, change_inner=10, change_noise=1.0)


def solve_walks(pool: ModelPool, units: list[tuple[str, int]], subject: Subject, depth: int, trained_model: str,
                kind: str, tag: str, cfg: WalkConfig, noise_rms: float | None = None):
    """One task: walk every (prompt, seed) under cfg, batched; one item each. ``noise_rms``: set the clamped
    walk's noise to this multiple of the embedding matrix's RMS entry."""
    target = make_target(pool.model(subject.model or trained_model, untrained=subject.untrained), depth,
                         toy=subject.toy)
    if noise_rms is not None:
        rms = target.lm.embedding_matrix.detach().double().pow(2).mean().sqrt().item()
        cfg = replace(cfg, noise=noise_rms * rms)
    items = [(target.lm.encode(p), seed) for p, seed in units]
    for res in walk_items(target, items, cfg):
        yield dict(kind=kind, subject=subject.key, subject_label=subject.label(depth), tag=tag, **res.record)


def _tasks(prof: Profile, trained_model: str, s: Subject, kind: str, tag: str, cfg: WalkConfig,
           prompts: tuple[str, ...], seeds: tuple[int, ...], noise_rms: float | None = None) -> list[Task]:
    """The walks of one condition: every (prompt, seed), cfg.batch_size per task."""
    units = [(p, seed) for seed in seeds for p in prompts]
    keys = [item_id(kind, s.key, tag, seed, p) for p, seed in units]
    size = cfg.batch_size
    return [Task(solve_walks, (s, prof.depth, trained_model, kind, tag, cfg, noise_rms), tuple(keys[i:i + size]),
                 tuple(units[i:i + size]), affinity=s.model or trained_model) for i in range(0, len(units), size)]


def _score(records: list[dict]) -> float:
    """Geometric mean of r (walks whose output never moved are left out); -inf if none."""
    rs = [r["r"] for r in records if r.get("r") and r["r"] > 0]
    return sum(math.log(x) for x in rs) / len(rs) if rs else -math.inf


def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """Two stages: the lr grid; then, at each subject's best lr, the walks until a token changes and the clamped
    sweep, and the comparisons and long walks (which need no lr). The cheapest claims per item come first, so an
    interrupted run has decided the most it could."""
    prof = profile(cfg.quick, cfg.seeds, list(cfg.prompts))
    base = dict(steps=prof.rounds, convention="scripts", noise=2e-4, batch_size=prof.batch_size, topk=5)
    tune = {s.key: {lr: _tasks(prof, cfg.model, s, "tune", f"lr={lr:g} rounds={prof.rounds}",
                               WalkConfig(method="clamped", inner_steps=prof.tune_inner, lr=lr, **base),
                               prof.prompts[:prof.tune_prompts], (0,)) for lr in prof.lr_grid} for s in SUBJECTS}
    yield [t for by_lr in tune.values() for ts in by_lr.values() for t in ts]
    change, sweep = [], []
    for s in SUBJECTS:
        scores = {lr: _score([done[k] for t in ts for k in t.keys if k in done]) for lr, ts in tune[s.key].items()}
        lr = max(prof.lr_grid, key=lambda x: scores[x])
        until = WalkConfig(method="clamped", inner_steps=prof.change_inner, lr=lr, until_change=True,
                           **dict(base, steps=prof.change_rounds))
        change += _tasks(prof, cfg.model, s, "change", f"until a token changes: inner={prof.change_inner} "
                         f"rounds<={prof.change_rounds} lr={lr:g} noise={prof.change_noise:g} rms", until,
                         prof.prompts, prof.seeds, prof.change_noise)
        for inner in prof.inner:
            sweep += _tasks(prof, cfg.model, s, "clamped", f"inner={inner} rounds={prof.rounds} lr={lr:g}",
                            WalkConfig(method="clamped", inner_steps=inner, lr=lr, **base), prof.prompts,
                            prof.seeds)
    yield change + sweep + _comparisons(prof, cfg.model)


def _comparisons(prof: Profile, trained_model: str) -> list[Task]:
    """The tangent and Jacobian walks from the same starts, and a long Jacobian walk on the trained model."""
    out = []
    for s in SUBJECTS:
        n = len(prof.prompts) if s.toy else prof.compare_prompts
        for method in ("tangent", "jacobian"):
            walk_cfg = WalkConfig(method=method, steps=prof.compare_steps, step_size=0.01, inner_steps=None,
                                  directions=prof.directions, krylov=prof.krylov, batch_size=prof.batch_size)
            tag = f"{method} steps={prof.compare_steps} k={prof.directions}x{prof.krylov}"
            out += _tasks(prof, trained_model, s, "compare", tag, walk_cfg, prof.prompts[:n], prof.seeds)
    for s in (s for s in SUBJECTS if not s.untrained):
        walk_cfg = WalkConfig(method="jacobian", steps=prof.long_steps, step_size=prof.long_step_size,
                              directions=prof.directions, krylov=prof.krylov, topk=5,
                              snapshots=tuple(range(0, prof.long_steps + 1, max(1, prof.long_steps // 6))))
        tag = f"jacobian steps={prof.long_steps} size={prof.long_step_size:g}"
        out += _tasks(prof, trained_model, s, "long", tag, walk_cfg, prof.prompts[:prof.long_prompts], (0,))
    return out


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header (the profile is recomputed from the run's config)."""
    prof = profile(config["quick"], config["seeds"], config["prompts"])
    return walks_report.sections(prof.prompts, prof.seeds, prof.rounds, prof.compare_steps, items, summary)


def header(config: dict, items: list[dict]) -> str:
    """The common header; the walks take nothing from the inversion setting (their own conventions follow it)."""
    return reporting.header(TITLE, config, items, setting_unused="the walks run no inversion: each subject's lr is "
                                                                "tuned in stage 1, the walks' conventions are below")


claims, draw, summarize = walks_report.claims, walks_report.draw, walks_report.summarize
