"""What the two vision experiments share: the depths a profile runs, and the report's header and sections."""
from __future__ import annotations

from .reporting import claims_of, claims_table, figure, markdown_table, profile_label


def depths_for(n: int, fractions: tuple[float, ...], given: tuple[int, ...] = (), stem: bool = True) -> list[int]:
    """The depths a model of n blocks runs: ``given`` (--layers) where it has them, else 1 and the fractions of n
    (rounded down), and 0 (the stem alone) with ``stem``; in order, each once."""
    if given:
        return sorted(k for k in set(given) if k <= n)
    return sorted({*((0,) if stem else ()), min(1, n), *(int(f * n) for f in fractions)})


def depths_text(items: list[dict], subjects) -> str:
    """'gpt2 [0, 1, 3]; vit-l16 [0, 1, 6]': the depths each subject's items cover."""
    return "; ".join(f"{s} {sorted({r['depth'] for r in items if r['subject'] == s})}" for s in subjects)


def vision_header(title: str, config: dict, items: list[dict], lines: list[str]) -> str:
    """Title, then the experiment, the profile and what its items cover, then the experiment's own lines."""
    return "\n".join([
        f"# {title}", "",
        f"- experiment: `{config['experiment']}`",
        f"- profile: {profile_label(config)}; {len(items)} item(s); device {config.get('device')}",
        *lines, ""])


def sections(summary: dict, figures: list[tuple[str, str]], columns: list[str], rows: list[list], note: str,
             kept: tuple[str, str]) -> list[str]:
    """The report's sections after its header: the claims, the figures (file, caption), the table per layer and
    its note, then the figure drawn from the tensors, which are not committed."""
    return [claims_table(claims_of(summary)), *(figure(path, caption) for path, caption in figures),
            "## Per layer\n", markdown_table(columns, rows), note,
            figure(kept[0], f"{kept[1]} (drawn from tensors.safetensors, which is not committed)")]
