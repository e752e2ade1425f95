"""The walks experiment's summary, figures and report, from items.jsonl alone (no model is loaded)."""
from __future__ import annotations

import math
import statistics

from ..records.folder import RunDir
from ..records.stats import fmt, mean_sem, num
from ..walks import input_at_output
from ..walks.figures import compare_figure, sweep_figure
from .figures import who
from .reporting import Claim, claims_of, claims_table, figure, quote, markdown_table
from .verdicts import decide_all, km

PAGE_R = {"1 inner step: ~10": 10.0, "50 inner steps: ~100": 100.0}
TRANSFORMERS = ("gpt2-untrained", "smollm2")


def _by(records: list[dict], **match) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _median(xs) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else None


def _labels(records: list[dict]) -> dict[str, str]:
    return {r["subject"]: r.get("subject_label", r["subject"]) for r in records}


def summarize(records: list[dict]) -> dict:
    """Every number the report shows: tuning, the inner-step sweep, the tangent/Jacobian comparison."""
    labels = _labels(records)
    tuning = {}
    for s in labels:
        rows = {}
        for r in _by(records, kind="tune", subject=s):
            rows.setdefault(r["lr"], []).append(r["r"])
        if rows:
            geo = {lr: _geo(v) for lr, v in rows.items()}
            tuning[s] = dict(geo_mean_r=geo, chosen=max((lr for lr in geo if geo[lr]), key=lambda lr: geo[lr],
                                                        default=None))
    sweep = []
    for s in labels:
        for inner in sorted({r["inner_steps"] for r in _by(records, kind="clamped", subject=s)}):
            rs = _by(records, kind="clamped", subject=s, inner_steps=inner)
            sweep.append(dict(subject=s, label=labels[s], inner=inner, lr=rs[0]["lr"], rounds=rs[0]["steps"],
                              r=mean_sem(r["r"] for r in rs), r_median=_median(r["r"] for r in rs),
                              r_random=mean_sem(r.get("r_random") for r in rs),
                              r_over_random=mean_sem(r.get("r_over_random") for r in rs),
                              input_distance=mean_sem(r["input_distance"] for r in rs),
                              output_distance=mean_sem(r["output_distance"] for r in rs),
                              output_relative=mean_sem(r["output_relative"] for r in rs),
                              changed_tokens=mean_sem(_changed(r) for r in rs)))
    compare, gains = [], []
    for s in labels:
        by_method = {m: {(r["prompt"], r["seed"]): r for r in _by(records, kind="compare", subject=s, method=m)}
                     for m in ("tangent", "jacobian")}
        for m, recs in by_method.items():
            if recs:
                rs = list(recs.values())
                compare.append(dict(subject=s, label=labels[s], method=m, r=mean_sem(r["r"] for r in rs),
                                    r_median=_median(r["r"] for r in rs),
                                    r_random=mean_sem(r.get("r_random") for r in rs),
                                    input_distance=mean_sem(r["input_distance"] for r in rs),
                                    output_distance=mean_sem(r["output_distance"] for r in rs),
                                    **_diagnostics(m, rs)))
        pairs = [(t, by_method["jacobian"][k]) for k, t in by_method["tangent"].items() if k in by_method["jacobian"]]
        ratios, ratios_l2 = _gains(pairs, "l1"), _gains(pairs, "l2")
        if ratios:
            gains.append(dict(subject=s, label=labels[s], gain=mean_sem(ratios), gain_median=_median(ratios),
                              gain_geo=_geo(ratios), n=len(ratios),
                              gain_l2=mean_sem(ratios_l2), gain_l2_median=_median(ratios_l2)))
    return dict(tuning=tuning, sweep=sweep, compare=compare, gain=gains, change=_change(records, labels),
                decoded=_decoded(records), claims=decide_all("walks", records))


def _change(records: list[dict], labels: dict[str, str]) -> list[dict]:
    """Per subject, the walks until a token changes: how many changed within the cap, the rounds it took (censored
    Kaplan-Meier median), and r against a random move's at that round; the first walk's text before and after."""
    out = []
    for s in labels:
        rs = _by(records, kind="change", subject=s)
        if not rs:
            continue
        hit = [r for r in rs if r.get("first_change") is not None]
        first = rs[0]["snapshots"]
        out.append(dict(subject=s, label=labels[s], n=len(rs), changed=len(hit), cap=rs[0]["steps"],
                        inner=rs[0]["inner_steps"], lr=rs[0]["lr"], noise=rs[0]["noise"],
                        rounds=_km_rounds(rs), r=mean_sem(r["r"] for r in hit),
                        r_random=mean_sem(r.get("r_random") for r in hit),
                        r_over_random=_geo(r.get("r_over_random") for r in hit),
                        output_relative=mean_sem(r.get("output_relative") for r in hit),
                        before=first[0]["text"], after=first[-1]["text"], prompt=rs[0]["prompt"]))
    return out


def _gains(pairs: list[tuple[dict, dict]], norm: str) -> list[float]:
    """Per (tangent, jacobian) pair from the same start: the Jacobian walk's input distance over the tangent
    walk's, both read where the output change reached the smaller of the two final output changes."""
    out = []
    for t, j in pairs:
        if not all(f"output_{norm}" in x["trajectory"][-1] for x in (t, j)):
            continue  # written before this norm was recorded
        delta = min(t["trajectory"][-1][f"output_{norm}"], j["trajectory"][-1][f"output_{norm}"])
        a, b = input_at_output(t["trajectory"], delta, norm), input_at_output(j["trajectory"], delta, norm)
        if delta > 0 and a and b:
            out.append(b / a)
    return out


def _changed(rec: dict) -> int | None:
    """Positions whose decoded token differs between the walk's first and last snapshot."""
    shots = rec.get("snapshots") or []
    return sum(int(a != b) for a, b in zip(shots[0]["ids"], shots[-1]["ids"])) if shots else None


def _diagnostics(method: str, rs: list[dict]) -> dict:
    d = [x for r in rs for x in r["diagnostics"]]
    if method == "tangent":
        return dict(orthogonality=mean_sem(x["orthogonality"] for x in d),
                    orthogonality_relative=mean_sem(x["orthogonality_relative"] for x in d))
    first = [r["diagnostics"][0] for r in rs if r["diagnostics"]]
    last = [r["diagnostics"][-1] for r in rs if r["diagnostics"]]
    return dict(gain_random=mean_sem(x["gain_random"] for x in first),
                gain_least_first=mean_sem(x["gain_least"] for x in first),
                gain_least_last=mean_sem(x["gain_least"] for x in last))


def _decoded(records: list[dict]) -> list[dict]:
    """The decoded walk of the first prompt, seed 0, per subject and inner-step count (the page's sequences)."""
    out = []
    for s in dict.fromkeys(r["subject"] for r in records):
        rs = _by(records, kind="clamped", subject=s, seed=0)
        chosen = (_by(rs, prompt=rs[0]["prompt"]) if rs else []) + _by(records, kind="long", subject=s)
        for r in chosen:
            out.append(dict(subject=s, kind=r["kind"], inner=r["inner_steps"], prompt=r["prompt"], r=r["r"],
                            r_random=r.get("r_random"), snapshots=[dict(step=x["step"], text=x["text"],
                                                                    topk_texts=x["topk_texts"])
                                                               for x in r["snapshots"]]))
    return out


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """r_vs_inner.png (the clamped walk's r against inner steps) and compare.png (tangent vs Jacobian walks)."""
    series = {}
    for x in summary["sweep"]:
        xs, stats = series.setdefault(x["label"], ([], []))
        xs.append(x["inner"])
        stats.append(x["r"])
    if series:
        sweep_figure(series, run_dir / "r_vs_inner.png", f"clamped walk: r after the walk (mean ± sem)\n{who(items)}",
                     PAGE_R)
    panels = {}
    for r in _by(items, kind="compare"):
        panels.setdefault(r.get("subject_label", r["subject"]), {}).setdefault(r["method"], []).append(r)
    if panels:
        compare_figure(panels, run_dir / "compare.png",
                       f"input change against output change along each walk\n{who(items)}")


def sections(prompts, seeds, rounds: int, compare_steps: int, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header, for a run of ``prompts`` x ``seeds``."""
    parts = [f"{len(prompts)} prompt(s) x {len(seeds)} seed(s); clamped walk ({rounds} rounds, the scripts' "
             "convention: U(0, 2e-4) noise on dims >= i, plain gradient steps on dims < i, lr tuned per subject); "
             f"tangent and Jacobian walks {compare_steps} moves of 0.01 * sqrt(T). "
             "r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1.\n"]
    if not items:
        return parts + ["No finished items yet.\n"]
    parts.append(claims_table(claims(summary)))
    return (parts + _sweep_section(summary) + _change_section(summary) + _compare_section(summary)
            + _decoded_section(summary))


def _geo(xs) -> float | None:
    """The geometric mean of the positive values (a ratio's typical size; the arithmetic mean of ratios is pulled
    up by a few large ones); None if there are none."""
    logs = [math.log(x) for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(statistics.fmean(logs)) if logs else None


def _km_rounds(rs: list[dict]) -> dict:
    """Rounds until the first change: the Kaplan-Meier median and its 95% interval's ends (None: not reached
    within the cap)."""
    k = km(rs, "first_change")  # counts from 1 (0-based steps + 1); rounds are already 1-based
    return {m: None if k[m] is None else k[m] - 1 for m in ("median", "low", "high")}


def _change_section(summary: dict) -> list[str]:
    rows = summary.get("change") or []
    if not rows:
        return []
    out = ["## Walking until a token changes (clamped walk)\n",
           "The page chooses N, eta and epsilon \"such that e_N corresponds to different input tokens\". Each walk "
           "here goes round after round until its pinv decode differs from the start's at some position, or the "
           "cap; the noise per round is a multiple of the embedding matrix's RMS entry (so it means the same on "
           "every model), lr as tuned above. r, the random move's r and the output change are read at the round "
           "of the change (walks that changed); rounds: Kaplan-Meier median with its 95% interval, walks that "
           "never changed counted as censored at the cap.\n"]
    out.append(markdown_table(
        ["subject", "noise / round", "inner", "lr", "changed within the cap", "rounds to the change (median, 95% "
         "interval)", "r at the change", "r of a random move", "r / random (geometric mean)",
         "output change (relative)"],
        [[x["label"], f"{x['noise']:.3g}", x["inner"], f"{x['lr']:g}", f"{x['changed']} of {x['n']} (cap "
          f"{x['cap']})", _rounds(x["rounds"], x["cap"]), fmt(x["r"], 3), fmt(x["r_random"], 3),
          num(x["r_over_random"], 3), fmt(x["output_relative"], 3)] for x in rows]))
    out.append("First walk of each subject, its decode at the start and where it first changed:\n")
    out.append("\n".join(f"    {x['label']}: {quote(x['before'])} -> {quote(x['after'])}" for x in rows) + "\n")
    return out


def _rounds(k: dict, cap: int) -> str:
    """A censored median in words: 'more than cap' where it was never reached."""
    if k["median"] is None:
        return f"more than {cap}"
    high = f"more than {cap}" if k["high"] is None else f"{k['high']:g}"
    return f"{k['median']:g} ({k['low']:g} to {high})"


def _sweep_section(summary: dict) -> list[str]:
    rows = [[x["label"], x["inner"], f"{x['lr']:g}", fmt(x["r"], 3), num(x["r_median"], 3), fmt(x["r_random"], 3),
             fmt(x["input_distance"], 3), fmt(x["output_distance"], 3), fmt(x["changed_tokens"], 2), x["r"]["n"]]
            for x in summary["sweep"]]
    out = ["## r against inner steps (clamped walk)\n"]
    if rows:
        out.append(figure("r_vs_inner.png", "r after the clamped walk against inner steps per round"))
    out.append(markdown_table(["subject", "inner", "lr", "r (mean ± sem)", "r median", "r of a random move",
                      "input L1", "output L1", "tokens changed", "n"], rows))
    tune = [[s, ", ".join(f"{lr:g}: {v:.3g}" for lr, v in t["geo_mean_r"].items() if v), f"{t['chosen']:g}"]
            for s, t in summary["tuning"].items() if t["chosen"] is not None]
    if tune:
        out.append("Learning-rate tuning (geometric-mean r on the tuning prompts):\n")
        out.append(markdown_table(["subject", "lr: r", "chosen"], tune))
    return out


def _compare_section(summary: dict) -> list[str]:
    out = ["## Jacobian walk against the page's tangent walk\n"]
    rows = [[c["label"], c["method"], fmt(c["r"], 3), fmt(c["r_random"], 3), fmt(c["input_distance"], 3),
             fmt(c["output_distance"], 3),
             fmt(c.get("orthogonality_relative"), 8) if c["method"] == "tangent" else
             f"least {fmt(c.get('gain_least_last'), 3)} vs random {fmt(c.get('gain_random'), 3)}"]
            for c in summary["compare"]]
    out.append(markdown_table(["subject", "method", "r", "r of a random move", "input L1", "output L1",
                      "check (tangent: largest gradient @ perp relative to the gradient; jacobian: least gain "
                      "against a random direction's)"], rows))
    out.append(markdown_table(["subject", "input distance gain at equal output change, L1 (mean ± sem)", "median",
                      "geometric mean", "the same in L2 (mean ± sem)", "pairs"],
                     [[g["label"], fmt(g["gain"], 2), f"{g['gain_median']:.3g}", f"{g['gain_geo']:.3g}",
                       fmt(g.get("gain_l2"), 2), g["n"]] for g in summary["gain"]]))
    out.append("The L2 column reads the same walks in Euclidean norms: r is an L1 ratio, and L1 favours dense "
               "moves (a unit vector spread over d coordinates has L1 norm up to sqrt(d)), while the tangent "
               "walk's null-space vector from the SVD is nearly one coordinate axis.\n")
    if summary["compare"]:
        out.append(figure("compare.png", "input change against output change along each walk"))
    return out


def _decoded_section(summary: dict) -> list[str]:
    out = ["## Decoded walks (pinv decoder, seed 0)\n"]
    for d in summary["decoded"]:
        what = f"{d['inner']} inner step(s)" if d["kind"] == "clamped" else "long Jacobian walk"
        out.append(f"**{d['subject']}, {what}** (final r = {num(d['r'], 3)}, r of a random move of the same size "
                   f"{num(d['r_random'], 3)}):\n")
        lines = [f"    step {s['step']:>3}: {quote(s['text'])}" for s in d["snapshots"]]
        lines += [f"    top-{j + 1}: {quote(t)}" for j, t in enumerate(d["snapshots"][-1]["topk_texts"])]
        out.append("\n".join(lines) + "\n")
    return out
