"""The leakage audit's report, from its items alone: rates per model x layer x source x exposure, the rule that
says where each layer stops leaking the prompt exactly, the figure and the markdown.

The rule, applied per model x layer x source to the precision ladder (fp32, bf16, fp8 e4m3, int8, int4, int2 with
zero points, in that order) and to the noise grid (smallest sigma first): a layer leaks the prompt **exactly** at an
exposure when every token of every prompt and random sequence was recovered (recovery 1), and **certifiably** when,
besides, every position's ambiguity set was one token (certified 1). It stops at the first exposure of the ladder
where that fails.
"""
from __future__ import annotations

from ..inversion.exposure import ATTACKERS
from ..records.folder import RunDir
from ..records.plots import pyplot, save_figure
from ..records.stats import fmt, mean_sem
from .reporting import Claim, figure, markdown_table, profile_label, quote

FIGURE = "leakage.png"
SOURCE_NAMES = {"hidden": "hidden state", "k": "keys", "v": "values"}
RATES = ("recovery", "certified", "fits", "mean_set", "seconds_per_token")


def _key(r: dict) -> tuple:
    return r["model"], r["layer"], r["source"]


def summarize(items: list[dict]) -> dict:
    """One row per model x layer x source x exposure (in the plan's order), and the rule's verdict per model x
    layer x source."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(items, key=lambda r: (r["model"], r["layer"], list(SOURCE_NAMES).index(r["source"]), r["order"])):
        groups.setdefault((*_key(r), r["condition"]), []).append(r)
    rows = []
    for (model, layer, source, condition), rs in groups.items():
        first = rs[0]
        rows.append(dict(model=model, layer=layer, source=source, condition=condition, group=first["group"],
                         attacker=first["attacker"], bits=first["bits"], noise=first["noise"], items=len(rs),
                         tokens=sum(r["n_tokens"] for r in rs), missed=sum(r["missed"] for r in rs),
                         checked=sum(r["checked"] for r in rs),
                         **{f: mean_sem(r[f] for r in rs) for f in RATES},
                         **{f"recovery_{kind}": mean_sem(r["recovery"] for r in rs if r["kind"] == kind)
                            for kind in ("text", "random")}))
    stops = []
    for key in dict.fromkeys(_key(r) for r in rows):
        mine = [r for r in rows if _key(r) == key]
        stops.append(dict(zip(("model", "layer", "source"), key),
                          **{g: where_it_stops([r for r in mine if r["group"] == g]) for g in ("precision", "noise")}))
    cut = {(r["candidates_cut"], r["vocab_size"], r["ranking"]) for r in items}
    return dict(rows=rows, stops=stops, cut=[dict(cut=c, vocab_size=v, ranking=k) for c, v, k in sorted(cut)],
                claims=[])


def where_it_stops(ladder: list[dict]) -> dict:
    """Where the ladder's exposures stop giving every token back (``exact``) and every position certified
    (``certified``): the last exposure that still does before the first that does not, and that one with its
    rate, and ``beyond_cut``: at how many of its positions the true token was left out of the candidates checked
    (a row whose sets must hold it: then its rate is a lower bound). None where the ladder is empty."""
    out = {}
    for rate in ("recovery", "certified"):
        holds = [r[rate]["mean"] is not None and r[rate]["mean"] >= 1 - 1e-12 for r in ladder]
        fail = holds.index(False) if False in holds else None
        out["exact" if rate == "recovery" else rate] = dict(
            through=ladder[fail - 1 if fail is not None else -1]["condition"] if ladder and fail != 0 else None,
            fails_at=None if fail is None else ladder[fail]["condition"],
            rate=None if fail is None else ladder[fail][rate]["mean"], tried=len(ladder),
            beyond_cut=0 if fail is None else ladder[fail].get("missed", 0))
    return out


def stop_text(stop: dict, what: str, noun: str) -> str:
    """One clause of the rule's verdict: 'recovered exactly through int8, not at int4 (recovery 0.93)'."""
    if not stop["tried"]:
        return ""
    if stop["fails_at"] is None:
        return f"{what} at every {noun} tried (through {stop['through']})"
    beyond = f", a lower bound: the true token was beyond the cut at {stop['beyond_cut']} position(s)" \
        if stop.get("beyond_cut") else ""
    if stop["through"] is None:
        return f"not {what} even at {stop['fails_at']} ({stop['rate']:.2f}{beyond})"
    return f"{what} through {stop['through']}, not at {stop['fails_at']} ({stop['rate']:.2f}{beyond})"


def stop_sentences(summary: dict) -> list[str]:
    """The rule's verdict per model x layer x source, as one line each."""
    lines = []
    for s in summary["stops"]:
        parts = []
        for group, noun in (("precision", "precision"), ("noise", "noise level")):
            clauses = [stop_text(s[group]["exact"], "recovered exactly", noun),
                       stop_text(s[group]["certified"], "every position certified", noun)]
            if any(clauses):
                parts.append(f"{group}: " + "; ".join(c for c in clauses if c))
        lines.append(f"- {s['model']}, layer {s['layer']}, {SOURCE_NAMES[s['source']]}: " + ". ".join(parts) + ".")
    return lines


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """leakage.png: recovery (solid) and certified rate (dashed) against the format (bits per value) and against
    the noise sigma, one colour per model x layer, one column per source."""
    rows = summary["rows"]
    sources = [s for s in SOURCE_NAMES if any(r["source"] == s for r in rows)]
    lines = list(dict.fromkeys((r["model"], r["layer"]) for r in rows))
    fig, axes = pyplot().subplots(2, len(sources), figsize=(4.2 * len(sources), 7.2), squeeze=False)
    for j, source in enumerate(sources):
        for i, group in enumerate(("precision", "noise")):
            ax = axes[i][j]
            for c, (model, layer) in enumerate(lines):
                pts = [r for r in rows if (r["model"], r["layer"], r["source"], r["group"]) ==
                       (model, layer, source, group)]
                xs = list(range(len(pts))) if group == "precision" else [r["noise"] for r in pts]
                for rate, ls in (("recovery", "-"), ("certified", "--")):
                    ax.plot(xs, [r[rate]["mean"] for r in pts], ls=ls, marker="o", ms=3, color=f"C{c % 10}",
                            label=f"{model} layer {layer}, {rate}" if j == 0 and i == 0 else None)
                if group == "precision" and pts:
                    ax.set_xticks(xs, [f"{r['condition']}\n{r['bits']} bits" for r in pts], fontsize=7)
            if group == "noise":
                ax.set_xscale("log")
                ax.set_xlabel("noise sigma (x each position's RMS)")
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{SOURCE_NAMES[source]}: {'format' if group == 'precision' else 'noise'}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("rate (solid: recovery, dashed: certified)", fontsize=8)
    fig.legend(fontsize=7, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.04 * max(1, len(lines))))
    fig.suptitle("Token recovery and certified positions from exposed states", fontsize=10)
    save_figure(fig, run_dir / FIGURE)


def _table_rows(rows: list[dict]) -> list[list]:
    return [[r["model"], r["layer"], SOURCE_NAMES[r["source"]], r["condition"], r["items"], fmt(r["recovery"]),
             fmt(r["recovery_text"]), fmt(r["recovery_random"]), fmt(r["certified"]), fmt(r["fits"]),
             fmt(r["mean_set"], 1), f"{r['missed']}/{r['checked']}", fmt(r["seconds_per_token"], 3)] for r in rows]


COLUMNS = ["model", "layer", "source", "exposure", "prompts", "recovery", "English", "random ids", "certified",
           "some token fits", "mean set size", "true token left out", "s / token"]


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rows = summary["rows"]
    shielded = {_key(r) for r in rows if r["group"] == "defence"}
    defended = [r for r in rows if r["group"] == "defence" or (r["condition"] == "fp32" and _key(r) in shielded)]
    attackers = sorted({r["attacker"] for r in defended})
    return ["## Where each layer stops leaking the prompt exactly\n",
            "A layer leaks the prompt exactly at an exposure when every token of every prompt and random sequence is "
            "recovered, and certifiably when every position's ambiguity set is also one token; each line names the "
            "last exposure of the ladder (most bits first; least noise first) that still does and the first that "
            "does not, with its rate.\n", *stop_sentences(summary), "",
            figure(FIGURE, "token recovery (solid) and certified positions (dashed) per format and noise sigma"),
            "## Per exposure\n",
            "Rates are means over prompts (± standard error); 'true token left out' counts positions, among those "
            "whose recovered prefix was right, whose ambiguity set does not hold the true token.\n",
            markdown_table(COLUMNS, _table_rows([r for r in rows if r["group"] != "defence"])),
            "## Defences: a secret matrix per head (KV-Cloak-style) and additive noise\n",
            "Attackers: " + "; ".join(f"**{a}** {ATTACKERS[a]}" for a in attackers) + ". fp32 beside them, "
            "undefended.\n", markdown_table(COLUMNS, _table_rows(defended))]


def header(config: dict, items: list[dict]) -> str:
    """Title and what the run covers: models, layers, prompts, random sequences, the candidate cut."""
    kinds = {k: sorted({r["prompt"] for r in items if r["kind"] == k}) for k in ("text", "random")}
    cuts = {(r["candidates_cut"], r["vocab_size"], r["ranking"]) for r in items}
    cut = "; ".join(f"the whole vocabulary ({v} tokens)" if c >= v else f"the first {c} of {v} tokens in the "
                    f"{k!r} ranking's order at each position" for c, v, k in sorted(cuts))
    lengths = sorted({r["n_tokens"] for r in items if r["kind"] == "random"})
    models = ", ".join(dict.fromkeys(f"{r['model']} ({'trained' if r['trained'] else 'untrained'})" for r in items))
    return "\n".join([
        "# Leakage audit: what stored, quantised, noisy or obfuscated states give back", "",
        f"- experiment: `{config['experiment']}`; profile: {profile_label(config)}; "
        f"{len(items)} item(s); device {config.get('device')}",
        f"- models: {models}; layers {', '.join(map(str, sorted({r['layer'] for r in items})))} (blocks run)",
        f"- English prompts: {len(kinds['text'])} ({', '.join(quote(p) for p in kinds['text'][:3])}"
        f"{', ...' if len(kinds['text']) > 3 else ''}); random id sequences: {len(kinds['random'])}"
        f"{' of ' + '/'.join(map(str, lengths)) + ' tokens' if lengths else ''}",
        f"- ambiguity sets over {cut}", ""])


def claims(summary: dict) -> list[Claim]:
    """No claim of the page: the audit's verdicts are the rule's lines."""
    return []
