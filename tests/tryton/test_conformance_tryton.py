"""The conformance kit (portal/connectors/conformance/) passes against the Tryton connector and a live trytond.

The write checks add a few "CK-…" parties and a project to the session's Tryton database (a copy of the
template, see conftest.py); every name is unique, so other tests are not disturbed.
"""

from __future__ import annotations

import pytest

from portal.connectors.builtin.tryton import TrytonConnector
from portal.connectors.client import ConnectorClient
from portal.connectors.conformance import FAIL, PASS, SKIP, format_table, run_checks
from tests.conftest import assert_conformant, served

pytestmark = pytest.mark.tryton

TOKEN = "conformance-t0ken"


def test_tryton_connector_is_conformant_in_process(tryton, tmp_path):
    app_config = {"TRYTON_CONNECTOR_STATE": str(tmp_path / "tryton_connector.sqlite")}
    with ConnectorClient("builtin:tryton", app_config=app_config, timeout=60, retries=0) as client:
        results = run_checks(client, tryton.connection_info())
    statuses = assert_conformant(results)
    for actor_type in ("Customer", "Supplier", "Person", "Project"):
        for check in ("GetActorsByTimestamp inclusive", "GetActors", "SearchActors (blank)", "CreateActor",
                      "CreateActor idempotent", "SaveActors"):
            assert statuses[f"{actor_type}: {check}"] == PASS, format_table(results)
    for actor_type in ("Customer", "Person"):  # enough demo records for more than one page
        assert statuses[f"{actor_type}: GetActorsByTimestamp paging"] == PASS, format_table(results)
    assert statuses["Person: SearchActorByParent"] == PASS
    assert statuses["Unknown ConnectionGuid"] == statuses["Response members"] == PASS
    assert statuses["DeleteConnection"] == PASS
    assert statuses["GetList (zero GUID)"] == SKIP  # Tryton's config has no list fields


def test_tryton_connector_is_conformant_over_http(tryton, tmp_path):
    connector = TrytonConnector(tmp_path / "tryton_connector.sqlite")
    with served(connector, TOKEN) as url, ConnectorClient(url, token=TOKEN, timeout=60, retries=0) as client:
        results = run_checks(client, tryton.connection_info(), actor_types=["Customer", "Person"], write=False)
    statuses = assert_conformant(results)
    assert not any(name.startswith(("Supplier", "Project")) for name in statuses)
    assert not any(name.endswith(("CreateActor", "SaveActors")) for name in statuses)
    assert statuses["Customer: GetActors"] == statuses["Person: SearchActorByParent"] == PASS


def test_wrong_password_fails_with_a_readable_reason(tryton, tmp_path):
    app_config = {"TRYTON_CONNECTOR_STATE": str(tmp_path / "tryton_connector.sqlite")}
    with ConnectorClient("builtin:tryton", app_config=app_config, timeout=60, retries=0) as client:
        results = run_checks(client, tryton.connection_info(password="not-the-password"), write=False)
    by_name = {r.name: r for r in results}
    assert by_name["TestConfigData"].status == FAIL
    assert "refused the user name or password" in by_name["TestConfigData"].reason
    assert "ERP_AUTH_FAILED" in by_name["TestConfigData"].reason
