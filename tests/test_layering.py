"""The run's modules keep to their jobs: the chain never reaches MLflow, and no import circle joins them.

Read from the source (every import statement, function-level and TYPE_CHECKING ones included), so a lazy
import that closes a circle is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import edgebench

PKG = Path(edgebench.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in its body (``from edgebench import chain`` -> edgebench.chain)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t in _imports(m, f) if t in mods and t != m} for m, f in mods.items()}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_chain_imports_neither_mlflow_nor_tracking():
    imported = _imports("edgebench.chain", PKG / "chain.py")
    assert not {m for m in imported if m == "mlflow" or m.startswith("mlflow.")}
    assert "edgebench.tracking" not in imported and "edgebench.record" not in imported


def test_deploy_writes_no_record():
    imported = _imports("edgebench.deploy", PKG / "deploy.py")
    assert "edgebench.tracking" not in imported and "edgebench.record" not in imported
    assert not {m for m in imported if m == "mlflow" or m.startswith("mlflow.")}


def test_no_import_circle_through_the_run_modules():
    graph = _graph()
    for m in ("edgebench.pipeline", "edgebench.summary", "edgebench.chain", "edgebench.deploy", "edgebench.record"):
        assert m in graph, f"{m} not found under {PKG}"
        assert m not in _reaches(graph, m), f"{m} imports itself through a circle"
    assert "edgebench.pipeline" not in _reaches(graph, "edgebench.summary")


def test_the_circle_check_sees_a_lazy_import(tmp_path):
    """The checker itself: a function-level import that closes a circle is found."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    graph = {m: {t for t in _imports(m, tmp_path / f"{m}.py") if t in ("a", "b") and t != m} for m in ("a", "b")}
    assert "a" in _reaches(graph, "a")
