"""Lower layers never import higher ones: nothing under portal/ imports ``jobs`` (the scheduler registers itself
with ``runs.set_submitter`` instead), and the sync engine's modules stay small enough to hold in mind."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_in_portal_imports_jobs():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "portal").rglob("*.py")
                 if any(name == "jobs" or name.startswith("jobs.") for name in _imported_modules(path))]
    assert offenders == []


def test_sync_engine_modules_stay_readable():
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines())
             for path in (ROOT / "portal" / "services" / "sync").glob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > 550} == {}
