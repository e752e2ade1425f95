"""``lmrep report RUN... --html DIR``: a static, self-contained site of run folders, built from their files alone.

index.html lists the runs; each run gets an HTML file with its report (report.md rendered: the claims table with each
verdict coloured, the tables, the figures embedded as data URIs), and for inversion runs a per-prompt view: the
recovered text token by token, each token coloured by its certificate (exact search: residual against the
tolerance, and the runner-up's margin) or by whether it is the true token (other methods; hover for the true token
and its rank), the decoded snapshots along the optimisation and the top-k strings. Plain HTML and CSS, no script,
no server: open index.html in a browser.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from ..records.folder import RunDir, write_atomic
from ..engine import ITEMS, ItemLog
MAX_PROMPTS = 200  # per-prompt views shown per run's HTML file (the rest are counted)
OPEN = 5  # the first ones shown open
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
th{background:#f3f3f3}code,.tok{font-family:ui-monospace,monospace;white-space:pre}figure img{max-width:100%}
tr.claim td.verdict.holds{background:#d9f2d9}tr.claim td.verdict.fails{background:#f7d4d4}
tr.claim td.verdict.open{background:#f3ecd0}.tok{padding:0 1px;margin:0 1px;border-radius:3px}
.tok.sure,.tok.ok{background:#bfe8bf}.tok.close{background:#f5e3a3}.tok.unverified,.tok.bad{background:#f4b8b8}
details{margin:.3em 0;border-left:3px solid #ddd;padding-left:.6em}summary{cursor:pointer}
.legend .tok{margin-right:.6em}nav a{margin-right:1em}
"""


def write_site(run_dirs: list[RunDir], out: str | Path) -> Path:
    """index.html and one HTML file per run (folders of runs, like a sweep's, contribute each run); returns index."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [r for d in run_dirs for r in _expand(d.path)]
    names = _names(runs)
    rows = []
    for path, name in zip(runs, names):
        html_file = _slug(name) + ".html"
        body, summary = run_html(path)
        write_atomic(out / html_file, _document(name, f'<nav><a href="index.html">all runs</a></nav>{body}'))
        rows.append(f'<tr class="run"><td><a href="{html_file}">{_e(name)}</a></td><td>{_e(summary["what"])}</td>'
                    f'<td>{summary["items"]}</td><td>{_e(summary["claims"])}</td></tr>')
    index = ("<h1>lmrep runs</h1><table class=\"runs\"><tr><th>run</th><th>kind</th><th>items</th>"
             "<th>claims: holds / does not hold / not decided</th></tr>" + "".join(rows) + "</table>")
    return write_atomic(out / "index.html", _document("lmrep runs", index))


def _expand(path: Path) -> list[Path]:
    """A run folder, or the run folders inside a folder of runs (reproduce all, a sweep)."""
    subs = sorted(c.parent for c in path.glob("*/config.json"))
    own = (path / ITEMS).exists() or not subs
    return ([path] if own else []) + [r for s in subs for r in _expand(s)]


def _names(runs: list[Path]) -> list[str]:
    """Each run's name: its folder, with its parent's when two would share one."""
    short = [p.name for p in runs]
    return [f"{p.parent.name}/{p.name}" if short.count(p.name) > 1 else p.name for p in runs]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def run_html(path: Path) -> tuple[str, dict]:
    """One run's HTML body and what the index says of it (what ran, items, claim counts)."""
    config = _json(path / "config.json") or {}
    records = _records(path)
    parts = [f"<h1>{_e(path.name)}</h1>"]
    report = path / "report.md"
    if report.exists():
        parts.append(markdown_html(report.read_text(), path))
    else:
        parts.append(_summary_table(_json(path / "summary.json") or {}))
    parts += [_figure(p.name, p) for p in sorted(path.glob("*.png")) if not report.exists()
              or p.name not in report.read_text()]
    if records:
        parts.append(prompts_html(records))
    parts.append(f"<details><summary>config.json</summary><pre>{_e(json.dumps(config, indent=2))}</pre></details>")
    body = "".join(parts)
    verdicts = [re.search(r'class="verdict (\w+)"', row).group(1) for row in re.findall(r'<tr class="claim">.*?</tr>',
                                                                                          body)]
    claims = " / ".join(str(verdicts.count(v)) for v in ("holds", "fails", "open")) if verdicts else "-"
    what = config.get("experiment") or config.get("command") or "?"
    return body, dict(what=what, items=len(records) or len(ItemLog(RunDir(path)).done), claims=claims)


def _records(path: Path) -> list[dict]:
    """Inversion records: the items of an invert run or an experiment that are inversions."""
    items = ItemLog(RunDir(path)).items() if (path / ITEMS).exists() else []
    return [r for r in items if "recovered_ids" in r]


def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _e(x) -> str:
    return html.escape(str(x))


def _document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _figure(name: str, path: Path, alt: str = "") -> str:
    """A PNG embedded in the HTML; figures the report does not place are captioned with their file name."""
    if not path.exists():
        return f"<p>(figure {_e(name)} is missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    caption = "" if alt else f"<figcaption>{_e(name)}</figcaption>"
    return f'<figure><img alt="{_e(alt or name)}" src="data:image/png;base64,{data}">{caption}</figure>'



def _summary_table(summary: dict) -> str:
    rows = [f"<tr><td>{_e(k)}</td><td>{_e(_stat(v))}</td></tr>" for k, v in summary.items()]
    return "<h2>Summary</h2><table>" + "".join(rows) + "</table>" if rows else ""


def _stat(v) -> str:
    if isinstance(v, dict) and "mean" in v:
        return "-" if v["mean"] is None else f"{v['mean']:.3g} ± {v.get('sem') or 0:.2g} (n={v.get('n')})"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def _inline(text: str) -> str:
    """Markdown inline marks (code, bold, emphasis, links) on escaped text."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{_e(p[1:-1])}</code>")
            continue
        p = _e(p)
        p = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", p)
        p = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", p)
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', p))
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A markdown table row's cells (``reporting.table`` escapes pipes and newlines inside them)."""
    s = line.strip()[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip().replace("\\|", "|").replace("\\n", "\n") for c in re.split(r"(?<!\\)\|", s)]


VERDICTS = (("does not hold", "fails"), ("holds", "holds"))


def _verdict_class(text: str) -> str:
    return next((cls for word, cls in VERDICTS if text.startswith(word)), "open")


def _table(lines: list[str], claims: bool) -> str:
    head, rows = _cells(lines[0]), [_cells(x) for x in lines[2:]]
    out = [f'<table class="{"claims" if claims else "data"}"><tr>' + "".join(f"<th>{_inline(c)}</th>" for c in head)
           + "</tr>"]
    for r in rows:
        tds = [f"<td>{_inline(c)}</td>" for c in r]
        if claims and tds:
            tds[-1] = f'<td class="verdict {_verdict_class(r[-1])}">{_inline(r[-1])}</td>'
        out.append(("<tr class=\"claim\">" if claims else "<tr>") + "".join(tds) + "</tr>")
    return "".join(out) + "</table>"


def markdown_html(text: str, folder: Path) -> str:
    """The markdown lmrep's reports are written in (headings, pipe tables, figures, lists, code) as HTML; the table
    under a heading about the page's claims is the claims table."""
    out, lines, i, heading = [], text.splitlines(), 0, ""
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("```")), len(lines))
            out.append(f"<pre>{_e(chr(10).join(lines[i + 1:j]))}</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j], "claims" in heading.lower()))
            i = j
            continue
        if m := re.match(r"(#{1,4}) (.*)", line):
            heading = m.group(2)
            out.append(f"<h{len(m.group(1))}>{_inline(heading)}</h{len(m.group(1))}>")
        elif m := re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip()):
            out.append(_figure(m.group(2), folder / m.group(2), m.group(1)))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "".join(out)


def token_spans(rec: dict) -> str:
    """The recovered tokens, each a span coloured by its certificate (exact search) or by whether it is the true
    token; the title says the numbers."""
    tokens = rec.get("recovered_tokens") or [c.get("text", "?") for c in rec.get("certificate") or []]
    cert, truth = rec.get("certificate") or [], rec.get("target_tokens") or []
    ranks = (rec.get("true_rank") or {}).get("pinv") or []
    spans = []
    for t, text in enumerate(tokens):
        if t < len(cert):
            c = cert[t]
            tol = c.get("tolerance", rec.get("tolerance")) or 0.0
            runner = c.get("runner_up_residual")
            margin = None if runner is None or not tol else runner / tol
            cls = "unverified" if not c.get("verified") else "close" if margin is not None and margin < 10 else "sure"
            title = (f"residual {c.get('residual', 0):.3g} (tolerance {tol:.3g}); runner-up {c.get('runner_up_text')!r}"
                     f" residual {runner if runner is None else f'{runner:.3g}'}"
                     + ("" if margin is None else f" = {margin:.3g}x the tolerance"))
        else:
            want = truth[t] if t < len(truth) else None
            ok = t < len(rec.get("target_ids", [])) and t < len(rec.get("recovered_ids", [])) and \
                rec["target_ids"][t] == rec["recovered_ids"][t]
            cls = "ok" if ok else "bad"
            title = f"true token {want!r}" + (f", its rank under pinv {ranks[t]}" if t < len(ranks) else "")
        spans.append(f'<span class="tok {cls}" data-pos="{t}" title="{_e(title)}">{_e(text)}</span>')
    return "".join(spans)


LEGEND = ('<p class="legend">Tokens: <span class="tok sure">certified</span><span class="tok close">certified, '
          'runner-up within 10x the tolerance</span><span class="tok unverified">not verified</span>'
          '<span class="tok ok">the true token</span><span class="tok bad">another token</span></p>')


def prompts_html(records: list[dict]) -> str:
    """The per-prompt view of an inversion run: recovered tokens, snapshots along the optimisation, top-k."""
    out = [f"<h2>Per prompt ({len(records)})</h2>", LEGEND]
    for j, rec in enumerate(records[:MAX_PROMPTS]):
        label = " | ".join(str(rec[k]) for k in ("condition", "seed") if k in rec) or rec.get("layer_name", "")
        acc = rec.get("token_accuracy")
        head = (f"<summary>{_e(repr(rec.get('prompt', '')))} <small>{_e(label)}; token accuracy "
                f"{'-' if acc is None else f'{acc:.2f}'}</small></summary>")
        body = [f'<p class="recovered">recovered: {token_spans(rec)}</p>']
        snaps = rec.get("snapshots") or []
        if snaps:
            body.append("<table class=\"snapshots\"><tr><th>step</th><th>decoded</th><th>token accuracy</th></tr>" +
                        "".join(f"<tr><td>{s['step']}</td><td><code>{_e(s['text'])}</code></td>"
                                f"<td>{s.get('token_accuracy', 0):.2f}</td></tr>" for s in snaps) + "</table>")
        if rec.get("topk_texts"):
            body.append("<ol class=\"topk\">" + "".join(f"<li><code>{_e(t)}</code></li>" for t in rec["topk_texts"])
                        + "</ol>")
        out.append(f"<details{' open' if j < OPEN else ''}>{head}{''.join(body)}</details>")
    if len(records) > MAX_PROMPTS:
        out.append(f"<p>... and {len(records) - MAX_PROMPTS} more (see items.jsonl)</p>")
    return "".join(out)
