"""The package's shape: no import cycles inside lmrep, and nothing in the library imports what sits on top of it
(the experiments and the CLI)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import lmrep

ROOT = Path(lmrep.__file__).parent
TOP = ("lmrep.experiments", "lmrep.cli", "lmrep.__main__")  # on top: the library never imports them


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """lmrep modules that ``path`` imports anywhere (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lmrep")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("lmrep"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    """lmrep module -> the lmrep modules it imports (names that are not modules are dropped)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in files and m != name} for name, path in files.items()}


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in g:
        if v not in index:
            visit(v)
    return out


def _is_package_parent(a: str, b: str) -> bool:
    """A package's __init__ importing its own submodules (and they, the package's names) is not a cycle."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles():
    g = graph()
    # a submodule importing its own package's __init__ would run it; count only edges between distinct subtrees
    g = {v: {w for w in ws if not _is_package_parent(v, w)} for v, ws in g.items()}
    assert _cycles(g) == []


def test_library_never_imports_experiments_or_cli():
    upward = [(v, w) for v, ws in graph().items() if not v.startswith(TOP) for w in ws if w.startswith(TOP)]
    assert upward == []


def test_experiments_never_import_the_cli():
    assert [(v, w) for v, ws in graph().items() if v.startswith("lmrep.experiments")
            for w in ws if w.startswith("lmrep.cli")] == []


def test_the_checks_find_what_they_look_for():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]
    assert "lmrep.inversion.base" in graph()["lmrep.inversion.gd"]


def layout_paths(readme: str) -> set[str]:
    """Every file the README's layout block names, as a path from the repository root: a line that starts with
    ``folder/`` (at the left margin: a top folder; indented: one inside it) opens that folder, and each ``name.py``
    after it, on that line or the indented lines that follow, is a file in it."""
    block = readme[readme.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[: block.index("```")]
    top, folder, out = "", "", set()
    for line in block.splitlines():
        m = re.match(r"^( *)([\w/]+/)(?=\s)", line)
        if m:
            top, folder = (m.group(2), "") if not m.group(1) else (top, m.group(2).removeprefix(top))
            line = line[m.end():]
        out |= {top + folder + name for name in re.findall(r"(?<![\w/.])([\w/]+\.py)\b", line)}
    return out


def test_readme_layout_names_every_module_by_exact_path():
    repo = ROOT.parent
    named = layout_paths((repo / "README.md").read_text())
    tree = {p.relative_to(repo).as_posix() for folder in ("lmrep", "bench") for p in (repo / folder).rglob("*.py")
            if p.name != "__init__.py" or p.parent == ROOT}
    assert sorted(tree - named) == [], "modules the README's layout does not name"
    assert sorted(named - tree) == [], "files the README's layout names that are not in the tree"


def test_layout_paths_reads_folders_and_continuations():
    readme = "## Layout\n\n```\npkg/  a.py (x), b.py\n  sub/  c.py, d.py\n        e.py\nbench/  f.py\n```\n"
    assert layout_paths(readme) == {"pkg/a.py", "pkg/b.py", "pkg/sub/c.py", "pkg/sub/d.py", "pkg/sub/e.py",
                                    "bench/f.py"}


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60


def too_long(paths) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions (methods, nested ones) over MAX_FUNCTION_LINES, from
    their first line (decorators aside) to their last."""
    out = []
    for path in paths:
        text = Path(path).read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{path}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path}:{node.lineno} {node.name}: {lines} lines")
    return out


def test_no_module_over_300_lines_and_no_function_over_60():
    repo = ROOT.parent
    assert too_long(sorted([*ROOT.rglob("*.py"), *(repo / "bench").rglob("*.py")])) == []


def test_too_long_finds_long_modules_and_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "f.py").write_text(f"class A:\n    def ok(self):\n{body[:0]}        pass\n\n\ndef long():\n{body}\n")
    (tmp_path / "m.py").write_text("x = 1\n" * 301)
    (tmp_path / "fine.py").write_text(f"def fine():\n{chr(10).join(body.splitlines()[:59])}\n")
    found = too_long([tmp_path / "f.py", tmp_path / "m.py", tmp_path / "fine.py"])
    assert [f.split("/")[-1] for f in found] == ["f.py:6 long: 61 lines", "m.py: 301 lines"]
