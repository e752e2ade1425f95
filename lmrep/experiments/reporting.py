"""Markdown pieces every experiment report shares: the header (what ran, under which setting), tables, claims.

Reports are built from config.json and items.jsonl alone, so ``lmrep report`` can rebuild them without a model.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import SETTINGS


@dataclass
class Claim:
    page: str  # what the page says, in its words where short
    measured: str  # what this run measured, with its uncertainty
    verdict: str  # "holds", "does not hold", "partly", or "not tested here" (and why)


def header(title: str, config: dict, n_items: int) -> str:
    """Title, then the setting, profile, prompts and seeds of the run."""
    setting = SETTINGS[config["setting"]]
    prompts = config.get("prompts") or []
    return "\n".join([
        f"# {title}", "",
        f"- setting: **{setting.name}** ({setting.about})",
        f"- profile: {'quick' if config.get('quick') else 'full'}; {len(prompts)} prompt(s) x {config.get('seeds')} "
        f"seed(s); {n_items} item(s); device {config.get('device')}",
        f"- trained model: {config.get('model')} (stands in for trained GPT-2 where the page uses it)", ""])


def claims_table(claims: list[Claim]) -> str:
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
    return f"![{caption}]({path})\n\n*{caption}*\n"


def verdict(holds: bool | None, reason_if_none: str = "not enough data") -> str:
    if holds is None:
        return f"not decided ({reason_if_none})"
    return "holds" if holds else "does not hold"


def quote(text: str) -> str:
    """Decoded text shown exactly, whitespace and all."""
    return "`" + repr(text)[1:-1].replace("`", "'") + "`"
