"""lmrep reproduce / lmrep report: the quick profile of every experiment, run for real, and what its numbers mean.

Each experiment runs once per module (they share one model pool); the tests then check its items against what the
page and the method imply, rebuild its report from the JSON alone, and resume an interrupted run. The models are
small stand-ins of the same shape where the experiments count blocks: the untrained GPT-2 is a 12-block GPT-2 of
width 64, the trained model a 3-block Llama folder (what the experiments do does not depend on their size; the
real models run in `make demo` and in the tests that are about them).
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile

import matplotlib.image
import pytest
import torch

from lmrep.cli import main
from lmrep.experiments import ReproduceConfig, combine, experiments, reproduce
from lmrep.experiments.config import PAGE_PROMPT, SETTINGS
from lmrep.engine import ITEMS, ItemLog
from lmrep.experiments.pool import ModelPool
from lmrep.inversion import METHODS
from lmrep.records.stats import mean_sem
from lmrep.records.folder import RunDir

NAMES = ("sentence-reconstruction", "threshold", "nonsense", "token-mapping", "depth", "walks")


def _small_untrained_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    from lmrep.models.hub import seeded
    from lmrep.models.load import GPT2_TOKENIZER
    config = GPT2Config(n_embd=64, n_head=4, n_positions=128)  # GPT-2's 12 blocks, a narrow width
    return seeded(lambda: GPT2LMHeadModel(config), seed), GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER))


@pytest.fixture(scope="module")
def trained(tiny_llama_dir):
    """The trained model the experiments run here (their --model)."""
    return str(tiny_llama_dir)


@pytest.fixture(scope="module")
def pool():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("lmrep.models.load._build_untrained_gpt2", _small_untrained_gpt2)
        yield ModelPool("cpu")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, pool, trained):
    """name -> the run folder of its quick profile (run once per module)."""
    done = {}

    def get(name: str) -> RunDir:
        if name not in done:
            done[name] = reproduce(ReproduceConfig(name, quick=True, model=trained), tmp_path_factory.mktemp(name),
                                   progress=False, pool=pool)
        return done[name]
    return get


def items_of(run: RunDir) -> list[dict]:
    return run.read_jsonl(ITEMS)


def test_list_names_every_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert set(NAMES) <= set(experiments())


def test_bad_input_is_one_line_exit_2(capsys, tmp_path):
    assert main(["reproduce", "no-such-experiment", "--quick"]) == 2
    assert main(["report", str(tmp_path)]) == 2  # a folder without config.json
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("error:" in line for line in err)


def test_settings_follow_the_page_or_the_scripts():
    text = SETTINGS["text"].invert_config(2000, 0)
    orig = SETTINGS["original"].invert_config(1000, 0)
    assert (text.init, text.optimizer, text.lr) == ("text", "sgd", 0.001)
    assert (orig.init, orig.optimizer, orig.lr) == ("original", "sgd", 0.2)  # 0.1 * L1 at lr 2
    assert SETTINGS["text"].head == "logits" and SETTINGS["original"].head == "logits_nonorm"
    assert SETTINGS["original"].steps(trained=True) == 1000 and SETTINGS["original"].steps(trained=False) == 500


def test_sentence_reconstruction(quick_run):
    run = quick_run("sentence-reconstruction")
    items = items_of(run)
    fc = next(r for r in items if r["label"] == "FCNet (invertible)" and r["prompt"] == PAGE_PROMPT)
    non = next(r for r in items if r["label"] == "FCNet, last layer T*d" and r["prompt"] == PAGE_PROMPT)
    # the invertible net gives the page's prompt back exactly within its budget (nearest-row decoding)
    assert fc["true_rank"]["l2"] == [1] * 6 and fc["within_threshold"]
    assert fc["token_accuracy"] >= 5 / 6  # pinv: all but at most one token
    # the non-invertible variant does not, and its threshold is a real eq. 4 distance
    assert not any(all(r == 1 for r in ranks) for ranks in non["true_rank"].values())
    assert math.isfinite(non["threshold"]) and non["threshold"] > 0
    assert [s["step"] for s in fc["snapshots"]][:5] == [20, 40, 45, 50, 60]
    summary = json.loads((run / "summary.json").read_text())
    row = next(r for r in summary["conditions"] if r["label"] == "FCNet, last layer T*d")
    assert row["within_threshold"]["mean"] == float(non["within_threshold"])
    report = (run / "report.md").read_text()
    assert "setting: **original**" in report and "(exact at n = 60)" in report and (run / "reconstruction.png").exists()


def test_threshold(quick_run):
    items = items_of(quick_run("threshold"))
    assert {r["label"] for r in items} >= {"trained, head", "untrained, head", "trained, no head",
                                           "trained, head, float64", "trained, head, mix s=0.001 t=0.999"}
    for r in items:
        assert 0 < r["threshold_strict"] < r["threshold"]  # sigma 1/25 < 1/20 along the same noise
        if r["steps_to_m_strict"] is not None:  # the stricter level is crossed no earlier
            assert r["steps_to_m"] is not None and r["steps_to_m"] <= r["steps_to_m_strict"]
    by = {r["label"]: r for r in items}
    assert by["trained, head, mix s=0.001 t=0.999"]["steps_to_m"] == 0  # starting at e: already within m
    assert by["trained, head, float64"]["dtype"] == "float64"
    assert by["trained, head"]["head"] == "logits_nonorm"  # the original scripts' head


def test_nonsense(quick_run, pool, trained):
    items = items_of(quick_run("nonsense"))
    swaps = [r for r in items if r["method"] == "swap search"]
    assert swaps and all(r["kept"] == (r["goal_token"] == r["found_token"]) for r in items)
    assert sum(r["kept"] for r in swaps) >= 1  # the discrete search aims at the next token directly
    # the goal is the whole trained model's own greedy next token (the page's " blue" is GPT-2's)
    lm = pool.model(trained)
    ids = torch.tensor([lm.encode("The sky is")])
    expected = lm.decode([int(lm.model(input_ids=ids).logits[0, -1].argmax())])
    whole = [r for r in items if f"{lm.n_layers} blocks" in r["label"]]
    assert whole and all(r["goal_token"] == expected for r in whole)
    assert all(r["log10_ppl_prompt"] is not None for r in items)


def test_token_mapping(quick_run):
    run = quick_run("token-mapping")
    items = items_of(run)
    fc = next(r for r in items if r["label"] == "FCNet (invertible)")
    assert len(fc["topk_texts"]) == 5 and max(fc["true_rank"]["pinv"]) <= 5  # all true tokens in the top 5
    block = [r for r in items if r["label"] == "one trained block"]
    assert block and all(r["layer"] == 1 for r in block)
    summary = json.loads((run / "summary.json").read_text())
    rate = next(r for r in summary["rates"] if r["label"] == "FCNet (invertible)" and r["decoder"] == "pinv")
    tops = [rate[f"top{k}"]["mean"] for k in (1, 2, 5, 10, 100)]
    assert tops == sorted(tops) and tops[2] == 1.0


def test_depth(quick_run, pool, trained):
    run = quick_run("depth")
    items = items_of(run)
    assert {r["method"] for r in items} == set(METHODS)  # every registered method
    assert {(r["label"], r["depth"]) for r in items} == {(m, k) for m in ("gpt2 untrained", trained)
                                                         for k in (1, 2)}
    summary = json.loads((run / "summary.json").read_text())
    for s in summary["series"]:
        rs = [r for r in items if r["label"] == s["label"] and r["method"] == s["method"]]
        for k, acc in zip(s["layers"], s["token_accuracy"]):
            at_k = [r for r in rs if r["depth"] == k]
            if s["decoder"] == "own":  # a method without ranks scores itself
                expected = mean_sem(r["token_accuracy"] for r in at_k)
            else:  # top-1 under this decoder, from the true tokens' ranks
                expected = mean_sem(sum(x == 1 for x in r["true_rank"][s["decoder"]]) / r["n_tokens"] for r in at_k)
            assert acc == expected
    pinv = [s for s in summary["series"] if s["method"] == "gd" and s["decoder"] == "pinv"]
    assert len(pinv) == 2 and (run / "depth.png").exists()
    assert "![token accuracy per layer" in (run / "report.md").read_text()


def test_walks(quick_run):
    """Every stage of the walks experiment writes its items; the walk until a token changes is set in units of
    each model's embedding scale, stops at its change (or is censored at its cap), and the report says so."""
    run = quick_run("walks")
    rows = items_of(run)
    assert {"tune", "compare", "long", "clamped", "change"} <= {r["kind"] for r in rows}
    change = [r for r in rows if r["kind"] == "change"]
    assert len(change) == 2 * 3  # the quick profile's 2 prompts x 1 seed, per subject
    for r in change:
        assert r["until_change"] and r["noise"] > 0
        n = r["first_change"]
        assert r["steps_walked"] == (n if n is not None else r["steps"])
        assert (r["snapshots"][-1]["changed"] > 0) == (n is not None)
    gpt2 = {r["noise"] for r in change if r["subject"] != "smollm2"}
    assert len(gpt2) == 1 and gpt2 != {r["noise"] for r in change if r["subject"] == "smollm2"}
    summary = json.loads((run / "summary.json").read_text())
    assert {x["subject"] for x in summary["change"]} == {"gpt2-untrained", "mlp-mimic", "smollm2"}
    assert all(x["changed"] == sum(r["first_change"] is not None for r in change if r["subject"] == x["subject"])
               for x in summary["change"])
    assert "## Walking until a token changes" in (run / "report.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_report_rebuilds_from_json_alone(quick_run, name, capsys):
    run = quick_run(name)
    before = {f: (run / f).read_text() for f in ("summary.json", "report.md")}
    pngs = sorted(p.name for p in run.path.glob("*.png"))
    assert pngs
    for f in [*before, *pngs]:
        (run / f).unlink()
    assert main(["report", str(run.path)]) == 0
    assert {f: (run / f).read_text() for f in before} == before
    assert sorted(p.name for p in run.path.glob("*.png")) == pngs


def test_combined_report_names_every_experiment(quick_run, tmp_path):
    text = combine([quick_run(n) for n in NAMES], tmp_path / "report.md")
    for name in NAMES:
        assert f"`{name}`" in text
    assert "](" in text and not re.search(r"^## The page's claims", text, re.M)  # headings demoted one level
    # one table of every claim: a row per claim of each experiment, its setting and its figure's link
    table = text.split("## Every claim of the page in one table")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| experiment")]
    per_run = {n: len(experiments()[n].module.claims(json.loads((quick_run(n) / "summary.json").read_text())))
               for n in NAMES}
    assert len(rows) == sum(per_run.values()) and all(per_run.values())
    assert all(f"| {n} | original |" in table for n in NAMES) and "depth.png](" in table


def test_two_runs_of_one_experiment_are_told_apart_in_the_combined_report(quick_run, tmp_path):
    """Each claim row names the folder it comes from, and where two runs share an experiment, the list of runs and
    each run's section say which is which (a profile cut to fit beside the decisive run, say)."""
    run, depth = quick_run("threshold"), quick_run("depth")
    for parent in ("small", "large"):
        shutil.copytree(run.path, tmp_path / parent / "threshold")
    text = combine([RunDir(tmp_path / p / "threshold") for p in ("small", "large")] + [depth], tmp_path / "report.md")
    assert "Runs in this report: `small/threshold`, `large/threshold`, `depth`." in text
    assert re.search(r"^## .*: `small/threshold`$", text, re.M) and re.search(r"^## .*: `large/threshold`$", text, re.M)
    table = text.split("## Every claim of the page in one table")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| threshold |")]
    assert rows and len(rows) % 2 == 0
    # the same items decide each claim in both: both rows stay, side by side
    assert [r.endswith("| `small/threshold` |") for r in rows] == [True, False] * (len(rows) // 2)
    assert all(r.endswith("| `large/threshold` |") for r in rows[1::2])
    depth_rows = [line for line in table.splitlines() if line.startswith("| depth |")]
    assert depth_rows and all(r.endswith(f"| `{depth.path.parent.name}/{depth.path.name}` |") for r in depth_rows)


def test_the_combined_table_keeps_the_run_that_decided_a_claim_on_the_most_items(quick_run, tmp_path):
    """A claim decided in a small run and a larger one of the same setting shows the larger run's row; the small
    run's rows stay only where it has as many items, and the table says what it left out."""
    run = quick_run("threshold")
    small, large = tmp_path / "small" / "threshold", tmp_path / "large" / "threshold"
    for d in (small, large):
        shutil.copytree(run.path, d)
    lines = (small / "items.jsonl").read_text().splitlines()
    (small / "items.jsonl").write_text("".join(line + "\n" for line in lines[: len(lines) // 2]))
    assert main(["report", str(small)]) == 0
    n = {p: {c["key"]: c["n"] for c in json.loads((p / "summary.json").read_text())["claims"]} for p in (small, large)}
    fewer = [k for k in n[large] if n[small][k] < n[large][k]]
    assert fewer  # halving the items lowers n somewhere
    text = combine([RunDir(small), RunDir(large)], tmp_path / "report.md")
    table = text.split("## Every claim of the page in one table")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| threshold |")]
    assert sum(r.endswith("| `large/threshold` |") for r in rows) == len(n[large])
    assert sum(r.endswith("| `small/threshold` |") for r in rows) == len(n[large]) - len(fewer)
    assert f"`small/threshold`, {len(fewer)} claim(s)" in table


def test_fcnet_inverts_each_prompt_cut_to_its_first_tokens(pool, trained):
    from lmrep.experiments.sentence_reconstruction import FCNET_MAX_TOKENS, fcnet_prompts
    lm = pool.model(trained)
    prompts = [PAGE_PROMPT, "It was the best of times, it was the worst of times, it was the age of wisdom.",
               "It was the best of times, it was the worst of foolishness and nothing else."]
    got = fcnet_prompts(prompts, lm)
    assert got[0] == PAGE_PROMPT and len(got) == 2  # short as it is; two long ones with one cut, once
    for cut, whole in zip(got, prompts):
        ids = lm.encode(cut)
        assert len(ids) <= FCNET_MAX_TOKENS and lm.encode(whole)[:len(ids)] == ids  # the prompt's own first tokens
    assert len(lm.encode(got[1])) == FCNET_MAX_TOKENS


def test_steps_and_layers_apply_where_they_mean_something(pool):
    from lmrep.errors import LmrepError
    from lmrep.experiments import check, get
    from lmrep.experiments.depth import layers_for, plan
    cfg = ReproduceConfig("depth", steps=7, layers=(30, 1, 2, 1)).resolved()
    assert cfg.layers == (1, 2, 30) and layers_for(12, cfg) == [1, 2] and layers_for(30, cfg) == [1, 2, 30]
    assert cfg.steps_for(True, 60) == cfg.steps_for(False, 60) == 7
    assert ReproduceConfig("depth", quick=True).resolved().steps_for(True, 60) == 60
    assert ReproduceConfig("depth").resolved().steps_for(True, 60) == SETTINGS["original"].steps_trained
    tasks = [t for stage in plan(ReproduceConfig("depth", seeds=2, layers=(1,)).resolved(), pool, {}) for t in stage]
    seeds = {m: {k.split("seed=")[1].split(" ")[0] for t in tasks for k in t.keys if f"| {m} |" in k}
             for m in METHODS}
    assert seeds["exact"] == {"0"} and seeds["gd"] == {"0", "1"}  # the exact search draws no noise
    for name, kw in (("walks", dict(steps=5)), ("threshold", dict(layers=(1,)))):
        with pytest.raises(LmrepError, match="does nothing"):
            check(ReproduceConfig(name, **kw).resolved(), [get(name)])


def test_resume_does_not_redo_finished_items(quick_run, pool, trained, tmp_path, monkeypatch):
    src = quick_run("nonsense")
    lines = (src / ITEMS).read_text().splitlines()
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "config.json").write_bytes((src / "config.json").read_bytes())  # the interrupted run's own config
    (out / ITEMS).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut mid-line
    added = []
    original_add = ItemLog.add
    monkeypatch.setattr(ItemLog, "add", lambda self, key, rec: added.append(key) or original_add(self, key, rec))
    run = reproduce(ReproduceConfig("nonsense", quick=True, model=trained), out, progress=False, pool=pool)
    assert added == [json.loads(lines[-1])["id"]]  # only the item that was cut short ran again
    new = (run / ITEMS).read_text().splitlines()
    assert new[:-1] == lines[:-1] and len(new) == len(lines)
    assert json.loads(new[-1])["recovered_ids"] == json.loads(lines[-1])["recovered_ids"]  # same seed, same answer



def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile, nothing fetched from anywhere."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium here (.ci/run installs the Debian package)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)


def test_html_report_renders_in_a_browser(quick_run, tiny_gpt2_dir, tmp_path, capsys):
    run = quick_run("threshold")
    base = ["--model", str(tiny_gpt2_dir), "--layer", "1"]
    assert main(["invert", "The sky is blue.", "Paris is nice.", *base, "--steps", "20", "--topk", "3",
                 "--out", str(tmp_path / "gd-run")]) == 0
    assert main(["invert", "The sky is blue.", *base, "--method", "exact", "--out", str(tmp_path / "exact-run")]) == 0
    site = tmp_path / "site"
    assert main(["report", str(run.path), str(tmp_path / "gd-run"), str(tmp_path / "exact-run"), "--html",
                 str(site)]) == 0
    index = _chromium("--dump-dom", (site / "index.html").as_uri()).stdout
    assert all(f">{name}</a>" in index for name in (run.path.name, "gd-run", "exact-run"))
    claims = [line for line in (run / "report.md").read_text().split("## Per condition")[0].splitlines()
              if line.startswith("| ") and not line.startswith("| the page says")]
    page = _chromium("--dump-dom", (site / f"{run.path.name}.html").as_uri()).stdout
    assert page.count('<tr class="claim">') == len(claims) >= 5
    verdicts = [row.rstrip(" |").rsplit(" | ", 1)[-1] for row in claims]
    for cls, says in (("holds", "holds"), ("fails", "does not hold"), ("open", "not decided")):  # each coloured
        assert page.count(f'class="verdict {cls}"') == sum(v.startswith(says) for v in verdicts)
    assert page.count("data:image/png;base64,") >= 1  # the figure is inside the page
    gd = _chromium("--dump-dom", (site / "gd-run.html").as_uri()).stdout
    recs = [json.loads(line) for line in (tmp_path / "gd-run" / "items.jsonl").read_text().splitlines()]
    assert gd.count('class="tok ') == sum(len(r["recovered_ids"]) for r in recs) + 5  # + the legend's five
    assert gd.count('<table class="snapshots">') == 2 and gd.count('<ol class="topk">') == 2
    exact = _chromium("--dump-dom", (site / "exact-run.html").as_uri()).stdout
    (rec,) = [json.loads(line) for line in (tmp_path / "exact-run" / "items.jsonl").read_text().splitlines()]
    certified = sum(c["verified"] for c in rec["certificate"])
    assert exact.count('class="tok sure"') + exact.count('class="tok close"') == certified + 2  # + the legend's
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1000,1200", f"--screenshot={shot}", (site / f"{run.path.name}.html").as_uri())
    pixels = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    assert pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.01  # text, tables and a figure, not a blank page


def test_the_documented_example_experiment_is_one_module_and_one_row(pool, tmp_path, monkeypatch):
    """docs/reproduce.md's example, written as a module of an outside package and added by one row, runs through
    reproduce and gets a report whose claim is the measured round trip."""
    from pathlib import Path

    from lmrep.experiments import registry
    doc = (Path(__file__).resolve().parent.parent / "docs" / "reproduce.md").read_text()
    (code,) = [c for c in re.findall(r"^```python\n(.*?)^```", doc, re.M | re.S) if 'NAME, TITLE = "round-trip"' in c]
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "round_trip.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "round-trip" not in experiments()
    monkeypatch.setattr(registry, "MODULES", {**registry.MODULES, "round-trip": "mylab.round_trip"})
    run = reproduce(ReproduceConfig("round-trip", quick=True), tmp_path / "run", progress=False, pool=pool)
    items = items_of(run)
    assert len(items) == 2 and {r["prompt"] for r in items} == {PAGE_PROMPT, "The sky is blue."}
    lm = pool.model(ReproduceConfig.model)
    for r in items:  # the l2 decoder maps every W_E row back to its id (README: Decoders)
        assert r["accuracy"] == 1.0 and len(lm.encode(r["prompt"])) > 1
    report = (run / "report.md").read_text()
    assert "# Round trip" in report and "every W_E row decodes to its own id" in report and "| holds |" in report
