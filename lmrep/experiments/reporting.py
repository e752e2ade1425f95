"""Markdown pieces every experiment report shares: the header (what ran, under which setting), tables, claims.

Reports are built from config.json and items.jsonl alone, so ``lmrep report`` can rebuild them without a model.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..records.folder import RunDir
from .config import FULL_SEEDS, SETTINGS
from ..engine import ItemLog


@dataclass
class Claim:
    """One row of a report's claims table."""

    page: str  # what the page says, in its words where short
    measured: str  # what this run measured, with its uncertainty
    verdict: str  # "holds", "does not hold", or "not decided (why)"; see ``verdicts``


def profile_label(config: dict) -> str:
    """The profile a run's config asked for, in words: quick, full, or full cut by the options that shrink it
    (steps below the setting's own N, fewer seeds, a subset of layers), so a report never calls a cut run full."""
    if config.get("quick"):
        return "quick"
    cuts = [f"{name} {config[key]}" for key, name in (("steps", "N ="), ("seeds", "seeds"), ("layers", "layers"))
            if config.get(key) and not (key == "seeds" and config[key] >= FULL_SEEDS)]
    return "full" if not cuts else "full, cut to " + ", ".join(cuts)


def header(title: str, config: dict, items: list[dict], setting_unused: str = "") -> str:
    """Title, then the setting, profile, prompts and seeds the items cover. ``setting_unused``: why an experiment
    that runs no gradient-descent inversion takes nothing from the setting (the line says so instead)."""
    setting = SETTINGS[config["setting"]]
    prompts, seeds = {r.get("prompt") for r in items}, {r.get("seed") for r in items}
    return "\n".join([
        f"# {title}", "",
        f"- experiment: `{config['experiment']}`",
        f"- setting: **{setting.name}** ({setting.about})" if not setting_unused else
        f"- setting: {setting.name}, not used ({setting_unused})",
        f"- profile: {profile_label(config)}; {len(prompts)} prompt(s) x {len(seeds)} seed(s) "
        f"per condition at most; {len(items)} item(s); device {config.get('device')}",
        *([f"- steps: N = {config['steps']} for every gradient-descent run (not the setting's own N)"]
          if config.get("steps") else []),
        f"- trained model: {config.get('model')} (stands in for trained GPT-2 where the page uses it)",
        *tuned_lines(items), ""])


def claims_of(summary: dict) -> list[Claim]:
    """The claims a summary holds, decided by ``verdicts.decide_all`` when it was made from the items."""
    return [Claim(c["page"], c["measured"], c["verdict"]) for c in summary.get("claims", [])]


def claims_table(claims: list[Claim]) -> str:
    """The section that puts each of the page's claims next to what was measured."""
    rows = [[c.page, c.measured, c.verdict] for c in claims]
    return "## The page's claims next to what was measured\n\n" + markdown_table(["the page says", "measured",
                                                                                   "verdict"],
                                                                          rows) + "\n"


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A markdown table; cells are turned into text and pipes escaped."""
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", "\\n")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def figure(path: str, caption: str) -> str:
    """A markdown image with its caption below."""
    return f"![{caption}]({path})\n\n*{caption}*\n"


def quote(text: str) -> str:
    """Decoded text shown exactly, whitespace and all."""
    return "`" + repr(text)[1:-1].replace("`", "'") + "`"


def load_run(run_dir: RunDir) -> tuple[dict, list[dict]]:
    """config.json and the finished items of a run folder (not the tuning runs of a tuned setting: each item
    carries what they chose)."""
    return run_dir.config(), [r for r in ItemLog(run_dir).items() if not r.get("tuning")]


def tuned_lines(items: list[dict]) -> list[str]:
    """What the tuning chose per condition, when the items were run under a tuned setting."""
    chosen = {r["condition"]: r for r in items if r.get("tuned_optimizer")}
    if not chosen:
        return []
    return ["- tuned (lowest median best loss on the tuning prompts): " + "; ".join(
        f"{c}: {r['tuned_optimizer']} lr {r['tuned_lr']:g} {r['tuned_schedule']}" for c, r in chosen.items())]
