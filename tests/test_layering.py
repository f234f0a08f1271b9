"""The architecture's import rules, read from the source (AST), so a stray import fails here.

``ml/`` is usable from a notebook or the CLI: no web framework, no app code. ``layouts/`` are
pure functions returning component trees: no services, callbacks, numerical code or I/O.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "ml": ("dash", "dash_bootstrap_components", "flask", "flask_login", "plotly", "app", "callbacks", "layouts"),
    "layouts": ("app", "callbacks", "ml", "flask", "torch", "numpy", "sqlalchemy"),
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of the code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_its_import_rules(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    broken = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & set(FORBIDDEN[package])) for f in files}
    assert not {f: names for f, names in broken.items() if names}


def test_the_check_sees_function_local_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app.services import active\n    import dash.html\n")
    assert imported_modules(module) == {"app", "dash"}
