"""Markdown pieces every experiment report shares: the header (what ran, under which setting), tables, claims.

Reports are built from config.json and items.jsonl alone, so ``lmrep report`` can rebuild them without a model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..runs import RunDir
from .config import SETTINGS
from .items import ItemLog


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
        f"- trained model: {config.get('model')} (stands in for trained GPT-2 where the page uses it)", ""])


def claims_table(claims: list[Claim]) -> str:
    """The section that puts each of the page's claims next to what was measured."""
    rows = [[c.page, c.measured, c.verdict] for c in claims]
    return "## The page's claims next to what was measured\n\n" + table(["the page says", "measured", "verdict"],
                                                                          rows) + "\n"


def table(columns: list[str], rows: list[list]) -> str:
    """A markdown table; cells are turned into text and pipes escaped."""
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", "\\n")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def figure(path: str, caption: str) -> str:
    """A markdown image with its caption below."""
    return f"![{caption}]({path})\n\n*{caption}*\n"


def verdict(holds: bool | None, reason_if_none: str = "too close to call within two standard errors, or no data"
            ) -> str:
    if holds is None:
        return f"not decided ({reason_if_none})"
    return "holds" if holds else "does not hold"


def quote(text: str) -> str:
    """Decoded text shown exactly, whitespace and all."""
    return "`" + repr(text)[1:-1].replace("`", "'") + "`"


def load_run(run_dir: RunDir) -> tuple[dict, list[dict]]:
    """config.json and the finished items of a run folder."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        from ..errors import LmrepError
        raise LmrepError(f"'{run_dir.path}' has no config.json: give a folder written by lmrep reproduce")
    return json.loads(cfg_path.read_text()), list(ItemLog(run_dir).done.values())


def _sem(stat: dict) -> float:
    return stat.get("sem") or 0.0


def above(stat: dict | None, level: float) -> bool | None:
    """Whether a mean is above ``level`` by more than two standard errors (False: below by as much; None: too
    close to tell, or no data)."""
    if not stat or stat.get("mean") is None:
        return None
    if stat["mean"] - 2 * _sem(stat) > level:
        return True
    if stat["mean"] + 2 * _sem(stat) < level:
        return False
    return None


def below(stat: dict | None, level: float) -> bool | None:
    """Whether a mean is below ``level`` by more than two standard errors (False: above by as much)."""
    flipped = None if not stat or stat.get("mean") is None else dict(stat, mean=-stat["mean"])
    return above(flipped, -level)


def all_of(*checks: bool | None) -> bool | None:
    """False if any check fails, None if any cannot be told, else True."""
    if any(c is False for c in checks):
        return False
    return None if any(c is None for c in checks) else True


def greater(a: dict | None, b: dict | None) -> bool | None:
    """Whether mean a exceeds mean b by more than two standard errors of the difference (False: a <= b;
    None: a is higher but within that, or no data)."""
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return None
    diff = a["mean"] - b["mean"]
    if diff > 2 * (_sem(a) ** 2 + _sem(b) ** 2) ** 0.5:
        return True
    return False if diff <= 0 else None
