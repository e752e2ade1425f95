"""The evaluation set and the tuned setting: disjoint prompt sets; tuning picks the candidate of lowest median best
loss (a diverged run counts as infinite) and the evaluation runs with it, under the same item ids."""
import math
from types import SimpleNamespace

import pytest

from lmrep.experiments.config import PAGE_PROMPT, SETTINGS, SKY_PROMPT, read_prompt_file
from lmrep.experiments.inversion import TargetSpec, invert_tasks
from lmrep.experiments.pool import ModelPool
from lmrep.experiments.tuning import GRID, TUNING_FILE, median_best, tunable, tuning_prompts

EVAL_FILE = TUNING_FILE.parent / "eval.txt"


def test_the_evaluation_set_is_large_enough_and_disjoint_from_the_tuning_prompts():
    evaluation, tuning = read_prompt_file(EVAL_FILE), tuning_prompts()
    assert evaluation[:2] == [PAGE_PROMPT, SKY_PROMPT] and len(evaluation) - 2 >= 20
    assert len(set(evaluation)) == len(evaluation) and len(tuning) >= 5
    assert not set(evaluation) & set(tuning)
    assert GRID[0].optimizer == "sgd" and GRID[0].lr == SETTINGS["original"].lr  # the scripts' steps are a candidate


def test_median_best_counts_a_diverged_run_as_infinite():
    ok = {"loss_best": 1.0, "health": "ok"}
    assert median_best([ok, dict(ok, loss_best=3.0), dict(ok, health="diverged", loss_best=0.1)]) == 3.0
    assert median_best([]) == math.inf


@pytest.mark.slow
def test_tuning_chooses_the_lowest_median_best_loss_then_runs_the_plan_with_it(tiny_gpt2_dir):
    spec = TargetSpec(str(tiny_gpt2_dir), depth=1, head="none")
    prompts = ["The sky is blue.", "Hi there."]
    base = SETTINGS["tuned"].invert_config(6, seed=1)

    def plan(cfg, pool, done):
        yield invert_tasks("cond", spec, prompts, base, {"label": "cond"})
    cfg = SimpleNamespace(get_setting=lambda: SETTINGS["tuned"])
    pool, done = ModelPool("cpu"), {}
    stages = tunable(plan)(cfg, pool, done)
    tuning = next(stages)
    assert len(tuning) == len(GRID) and all(t.args[2].seed == 0 for t in tuning)
    for task in tuning:
        done.update(task.run(pool))
    assert all(r["tuning"] for r in done.values()) and len(done) == len(GRID) * len(tuning_prompts())
    medians = {c: median_best([r for r in done.values() if r["candidate"] == c.tag]) for c in GRID}
    want = min(GRID, key=lambda c: (medians[c], GRID.index(c)))
    (task,) = next(stages)
    assert task.keys == invert_tasks("cond", spec, prompts, base, {})[0].keys  # the evaluation's ids are its own
    cfg_run = task.args[2]
    assert (cfg_run.optimizer, cfg_run.lr, cfg_run.schedule, cfg_run.seed) == (want.optimizer, want.lr,
                                                                              want.schedule, 1)
    recs = [rec for _, rec in task.run(pool)]
    assert all(r["tuned_lr"] == want.lr and not r.get("tuning") for r in recs)
    assert min(v for v in recs[0]["tuning_medians"].values() if v is not None) == medians[want]


def test_an_untuned_setting_plans_as_before(tiny_gpt2_dir):
    spec = TargetSpec(str(tiny_gpt2_dir), depth=1, head="none")
    tasks = invert_tasks("cond", spec, ["Hi."], SETTINGS["original"].invert_config(4, seed=0), {})

    def plan(cfg, pool, done):
        yield tasks
    stages = list(tunable(plan)(SimpleNamespace(get_setting=lambda: SETTINGS["original"]), None, {}))
    assert stages == [tasks]
