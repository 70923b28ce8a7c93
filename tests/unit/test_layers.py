"""Lower layers never import higher ones: nothing under portal/ imports ``jobs`` (the scheduler registers itself
with ``runs.set_submitter`` instead), the connectors, models and security never import the services or the web
layers, and the sync engine's modules stay small enough to hold in mind."""

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


#: the layers below the services (the connector protocol, its client and built-in connectors, the conformance kit;
#: the models; security) and the layers above them they must not import, not even inside a function
LOWER_LAYERS = ("connectors", "models", "security")
UPPER_LAYERS = ("portal.services", "portal.admin", "portal.erp_tab", "portal.crm", "portal.auth", "portal.api",
                "portal.web", "portal.cli", "portal.sync_cli", "portal.connector_cli", "portal.tryton_admin")


def test_lower_layers_never_import_the_layers_above():
    offenders = {}
    for layer in LOWER_LAYERS:
        for path in (ROOT / "portal" / layer).rglob("*.py"):
            upward = sorted(name for name in _imported_modules(path)
                            if any(name == upper or name.startswith(upper + ".") for upper in UPPER_LAYERS))
            if upward:
                offenders[str(path.relative_to(ROOT))] = upward
    assert offenders == {}


def test_sync_engine_modules_stay_readable():
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines())
             for path in (ROOT / "portal" / "services" / "sync").glob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > 550} == {}
