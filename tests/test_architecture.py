"""The layer rule (docs/architecture.md), enforced: import-linter's contracts in pyproject.toml pass
on the tree and fail on a tree with one upward import; no function-level import of a ded module
without a comment saying why; no module imports another's private name."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())", "--no-cache"]


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this tree's ded, not the installed one
    return subprocess.run(LINT, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    p = lint(ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in p.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "ded", tmp_path / "ded", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "ded" / "config.py", "a") as f:
        f.write("\nfrom ded.stages import stage  # noqa: E402 - a deliberate upward import\n")
    p = lint(tmp_path)
    assert p.returncode != 0
    assert "Layers: imports go only downward BROKEN" in p.stdout and "ded.config -> ded.stages" in p.stdout


def _imports(tree: ast.Module):
    """(node, at module level?) for every import statement of a module."""
    top = set()
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):  # TYPE_CHECKING blocks and optional-import fallbacks are module level
            top |= {id(n) for n in ast.walk(node)}
        top.add(id(node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, id(node) in top


def _ded_modules(node) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.level == 0 and node.module and node.module.split(".")[0] == "ded" else []
    return [a.name for a in node.names if a.name.split(".")[0] == "ded"]


def test_function_level_imports_of_ded_say_why():
    """A ded module imported inside a function is allowed only where a heavy library forces it, said on that line."""
    silent = []
    for path in sorted((ROOT / "ded").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node, top in _imports(ast.parse("\n".join(lines))):
            if not top and _ded_modules(node) and "#" not in lines[node.end_lineno - 1]:
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "\n".join(silent)


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in sorted((ROOT / "ded").rglob("*.py")):
        for node, _ in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and _ded_modules(node):
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, "\n".join(found)
