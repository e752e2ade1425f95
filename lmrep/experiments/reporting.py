"""Markdown pieces every experiment report shares: the header (what ran, under which setting), tables, claims.

Reports are built from config.json and items.jsonl alone, so ``lmrep report`` can rebuild them without a model.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..records.folder import RunDir
from .config import SETTINGS
from ..engine import ItemLog


@dataclass
class Claim:
    """One row of a report's claims table."""

    page: str  # what the page says, in its words where short
    measured: str  # what this run measured, with its uncertainty
    verdict: str  # "holds", "does not hold", or "not decided (why)"; see ``verdict``


def header(title: str, config: dict, items: list[dict]) -> str:
    """Title, then the setting, profile, prompts and seeds the items cover."""
    setting = SETTINGS[config["setting"]]
    prompts, seeds = {r.get("prompt") for r in items}, {r.get("seed") for r in items}
    return "\n".join([
        f"# {title}", "",
        f"- experiment: `{config['experiment']}`",
        f"- setting: **{setting.name}** ({setting.about})",
        f"- profile: {'quick' if config.get('quick') else 'full'}; {len(prompts)} prompt(s) x {len(seeds)} seed(s) "
        f"per condition at most; {len(items)} item(s); device {config.get('device')}",
        *([f"- steps: N = {config['steps']} for every gradient-descent run (not the setting's own N)"]
          if config.get("steps") else []),
        f"- trained model: {config.get('model')} (stands in for trained GPT-2 where the page uses it)", ""])


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


def verdict(holds: bool | None, reason_if_none: str = "too close to call within two standard errors, or no data",
            evidence: tuple = ()) -> str:
    """'holds', 'does not hold' or 'not decided (why)'. ``evidence``: the mean_sem stats the decision rests on
    (see ``judged``)."""
    if holds is None:
        return judged(f"not decided ({reason_if_none})", *evidence)
    return judged("holds" if holds else "does not hold", *evidence)


def judged(text: str, *evidence: dict | None) -> str:
    """A verdict, replaced by 'not decided' when a mean_sem stat it rests on has fewer than two items: one item
    has no standard error, so it can neither confirm nor refute a claim."""
    if any(not s or (s.get("n") or 0) < 2 for s in evidence):
        return "not decided (fewer than two items: no standard error)"
    return text


def quote(text: str) -> str:
    """Decoded text shown exactly, whitespace and all."""
    return "`" + repr(text)[1:-1].replace("`", "'") + "`"


def load_run(run_dir: RunDir) -> tuple[dict, list[dict]]:
    """config.json and the finished items of a run folder."""
    return run_dir.config(), ItemLog(run_dir).items()


def _spread(stat: dict | None) -> float | None:
    """Two standard errors of a mean_sem stat; None when there is no mean or no standard error (n < 2), so
    that a comparison resting on it is not decided."""
    if not stat or stat.get("mean") is None or stat.get("sem") is None:
        return None
    return 2 * stat["sem"]


def above(stat: dict | None, level: float) -> bool | None:
    """Whether a mean is above ``level`` by more than two standard errors (False: at or below it by two
    standard errors; None: too close to tell, fewer than two items, or no data)."""
    spread = _spread(stat)
    if spread is None:
        return None
    if stat["mean"] - spread > level:
        return True
    if stat["mean"] + spread <= level:
        return False
    return None


def below(stat: dict | None, level: float) -> bool | None:
    """Whether a mean is below ``level`` by more than two standard errors (False: at or above it by as much)."""
    flipped = None if not stat or stat.get("mean") is None else dict(stat, mean=-stat["mean"])
    return above(flipped, -level)


def all_of(*checks: bool | None) -> bool | None:
    """False if any check fails, None if any cannot be told, else True."""
    if any(c is False for c in checks):
        return False
    return None if any(c is None for c in checks) else True


def greater(a: dict | None, b: dict | None) -> bool | None:
    """Whether mean a exceeds mean b by more than two standard errors of the difference (False: a is at or below
    b by as much; None: within that, fewer than two items on either side, or no data)."""
    sa, sb = _spread(a), _spread(b)
    if sa is None or sb is None:
        return None
    diff, spread = a["mean"] - b["mean"], (sa ** 2 + sb ** 2) ** 0.5
    if diff > spread:
        return True
    return False if diff <= -spread else None
