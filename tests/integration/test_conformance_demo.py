"""The conformance kit passes against the built-in Demo ERP: in process (``builtin:demo``, the client the portal
builds with ``make_client``), over real HTTP on 127.0.0.1, and through ``flask connector check``."""

from __future__ import annotations

import pytest

from portal.connectors.builtin.demo import DemoErpConnector
from portal.connectors.client import ConnectorClient
from portal.connectors.conformance import PASS, SKIP, format_table, run_checks
from portal.services.connectors import make_client
from tests.conftest import assert_conformant, served

CONFIG = {"CompanyDb": "DEMO"}
TYPES = ("Customer", "Supplier", "Person", "Project")
TOKEN = "demo-t0ken"


def test_builtin_demo_passes_every_check(app):
    with app.app_context():
        client = make_client("builtin:demo")
        with client:
            results = run_checks(client, CONFIG)
    statuses = assert_conformant(results)
    skipped = sorted(name for name, status in statuses.items() if status != PASS)
    assert skipped == ["Person: GetList/GetListItems"], format_table(results)  # persons have no list field
    by_name = {r.name: r for r in results}
    for actor_type in TYPES:
        assert statuses[f"{actor_type}: GetActorsByTimestamp paging"] == PASS
        assert statuses[f"{actor_type}: CreateActor idempotent"] == PASS
        # keyset paging (by LastModified, ErpKey): a write between two pages skips nothing
        assert by_name[f"{actor_type}: GetActorsByTimestamp paging under writes"].reason.startswith(
            "feed is stable under writes between pages (keyset-like): re-saved "), format_table(results)
    assert "currencies" in by_name["GetList (zero GUID)"].reason
    assert "DefaultValue used for Currency, SimulateOffline" in by_name["GetConfigData"].reason
    assert by_name["Person: CreateActor"].reason.startswith("created Person P")
    assert " under Customer C" in by_name["Person: CreateActor"].reason


def test_demo_served_over_http_passes_every_check(tmp_path):
    erp = DemoErpConnector(tmp_path / "demo_erp.db")
    seeded = {a["ErpKey"]: a["FieldValues"] for a in erp.browse("Customer", limit=100)[1]}
    with served(erp, TOKEN) as url, ConnectorClient(url, token=TOKEN, retries=0, timeout=10) as client:
        results = run_checks(client, CONFIG)
    statuses = assert_conformant(results)
    assert [name for name, status in statuses.items() if status == SKIP] == ["Person: GetList/GetListItems"]
    assert erp.counts()["Customer"] == 41  # the 40 seeded customers and the one the kit created
    # the customer re-saved between two pages of the feed kept its values (as did every other)
    resaved = next(r for r in results if r.name == "Customer: GetActorsByTimestamp paging under writes")
    assert resaved.reason.split("re-saved Customer ")[1].split()[0] in seeded
    assert {key: erp.get_actor("Customer", key)["FieldValues"] for key in seeded} == seeded


def test_simulated_offline_demo_is_reported_as_warnings(tmp_path):
    erp = DemoErpConnector(tmp_path / "demo_erp.db")
    with served(erp) as url, ConnectorClient(url, retries=0, timeout=10) as client:
        results = run_checks(client, {**CONFIG, "SimulateOffline": "true"}, actor_types=["Project"], write=False)
    by_name = {r.name: r for r in results}
    assert_conformant(results)
    assert by_name["TestConnection"].status == "WARN"
    assert "ERP is offline, showing cached data" in by_name["TestConnection"].reason
    assert by_name["Project: GetActors"].status == "WARN"


@pytest.mark.parametrize("extra, code", [([], 0), (["--config", "ApiUser=bob", "--config", "ApiPassword=nope"], 1)])
def test_cli_against_builtin_demo(app, extra, code):
    result = app.test_cli_runner().invoke(args=["connector", "check", "builtin:demo", "--config", "CompanyDb=DEMO",
                                                "--actor-type", "Customer", "--actor-type", "Person", *extra])
    assert result.exit_code == code, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Conformance check of builtin:demo"
    if code == 0:
        assert any(line.startswith("Person: SaveActors") and "| PASS " in line for line in lines)
        assert not any(line.startswith(("Supplier", "Project")) for line in lines)
    else:
        assert any(line.startswith("TestConfigData") and "rejected the password of API user 'bob'" in line
                   for line in lines)
