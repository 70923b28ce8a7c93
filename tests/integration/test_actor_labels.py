"""The admin's name for an ERP actor type per connection ("Vendor" for Supplier; issue #17, "connector-defined
labels"): set on the actor type's mapping tab, shown wherever people read the actor type, never sent or stored in
its place (the constant stays in URLs, form values, links and connector calls).
"""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest
from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import ActorTypeConfig, AuditEvent, Connection, Link, RunKind, SyncChange, SyncRun, User
from portal.services import actor_labels
from tests.integration.test_erp_tab import configure, connect, connector_id, crm, open_create, text, url  # noqa: F401

# the fixtures imported above: connector_id (a connector row for the fake), crm (CRM records)


@pytest.fixture
def conn(app, admin_client, connector_id, fake):  # noqa: F811 - the fixture of test_erp_tab, re-declared here
    return configure(app, admin_client, connector_id)


def label_url(cid: int, actor_type: str = "Supplier") -> str:
    return f"/settings/connections/{cid}/mappings/{actor_type}/label"


def set_label(client, cid: int, label: str, actor_type: str = "Supplier", htmx: bool = True):
    return client.post(label_url(cid, actor_type), data={"label": label}, htmx=htmx)


def stored(app, cid: int, actor_type: str = "Supplier") -> str | None:
    with app.app_context():
        return db.session.get(Connection, cid).actor_type(actor_type).label


def plain(response) -> str:
    return htmllib.unescape(text(response))


def toasts(response) -> list[str]:
    return [t["message"] for t in json.loads(response.headers.get("HX-Trigger", "{}")).get("toast", [])]


# ------------------------------------------------------------------------------------------- the helper


def test_the_helper_picks_the_label_the_language_and_falls_back(app, admin_client, conn):
    with app.app_context():
        connection = db.session.get(Connection, conn)
        supplier = connection.actor_type("Supplier")
        assert actor_labels.actor_label(supplier) == "Supplier"  # no label: the standard name
        supplier.label = 'US:"Vendor";NO:"Leverandør"'
        db.session.commit()
        assert actor_labels.actor_label(supplier, language="US") == "Vendor"
        assert actor_labels.actor_label(supplier, language="NO") == "Leverandør"
        assert actor_labels.actor_label(supplier, language="DE") == "Vendor"  # US is the fallback
        assert actor_labels.actor_label(connection, "Supplier", language="US") == "Vendor"
        assert actor_labels.actor_label(conn, "Supplier", language="NO") == "Leverandør"  # a connection id
        link = Link(connection_id=conn, crm_type="company", crm_id=1, erp_actor_type="Supplier", erp_key="S1")
        assert actor_labels.actor_label(link, language="US") == "Vendor"  # anything with connection_id
        assert actor_labels.actor_label(supplier, "Customer") == "Customer"  # another type of the connection
        assert actor_labels.actor_label(None, "Supplier") == "Supplier"
        assert actor_labels.actor_label(conn, "Nonsense") == "Nonsense"
        supplier.label = 'US:"";NO:""'  # no language has a text
        assert actor_labels.actor_label(supplier) == "Supplier"


# ------------------------------------------------------------------------------ setting it (mapping tab)


def test_the_mapping_tab_offers_the_name_and_saving_it_updates_tab_switch_and_heading(app, admin_client, conn):
    page = text(admin_client.get(f"/settings/connections/{conn}/mappings?actor=Supplier"))
    assert 'id="actor-label"' in page and 'name="label"' in page and 'placeholder="Supplier"' in page
    assert 'maxlength="120"' in page

    response = set_label(admin_client, conn, "  Vendor  ")
    assert response.status_code == 200, text(response)
    body = plain(response)
    assert body.lstrip().startswith('<section id="actor-panel"')
    assert 'Sync ERP "Vendor" to CRM "Company"' in body
    assert '<h2 class="sr-only">Vendor fields</h2>' in body
    assert 'value="Vendor"' in body  # trimmed
    # the tab strip, out-of-band: the tab says Vendor, its id and link keep the constant
    tabs = body[body.index('id="actor-tabs"'):]
    assert 'hx-swap-oob="true"' in tabs[:200]
    assert re.search(r'id="tab-Supplier" href="[^"]*actor=Supplier"[^>]*>Vendor</a>', tabs, re.S)
    assert toasts(response) == ["ERP Supplier is shown to users as “Vendor”."]
    assert stored(app, conn) == "Vendor"

    page = plain(admin_client.get(f"/settings/connections/{conn}/mappings?actor=Supplier"))
    assert ">Vendor</a>" in page and 'Sync ERP "Vendor" to CRM "Company"' in page
    assert 'Sync ERP "Customer" to CRM "Company"' not in page  # the other tab is not shown; its tab text:
    assert re.search(r'id="tab-Customer"[^>]*>Customer</a>', page, re.S)
    # Defaults and Rank fields name it too
    assert ">Vendor</a>" in plain(admin_client.get(f"/settings/connections/{conn}/defaults?actor=Supplier"))


def test_the_change_is_audited_with_before_and_after(app, admin_client, conn):
    set_label(admin_client, conn, "Vendor")
    set_label(admin_client, conn, "")
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mapping.actor_label")
                                    .order_by(AuditEvent.id)).all()
        assert [(e.before, e.after) for e in events] == [({"label": ""}, {"label": "Vendor"}),
                                                        ({"label": "Vendor"}, {"label": ""})]
        assert events[0].object_type == "actor_type_config" and events[0].object_repr.endswith("/ Supplier")
        assert events[0].actor_label == "alice@example.com"


def test_an_empty_name_is_the_standard_name(app, admin_client, conn, crm):  # noqa: F811
    set_label(admin_client, conn, "Vendor")
    response = set_label(admin_client, conn, "   ")
    assert response.status_code == 200
    assert stored(app, conn) is None
    assert 'Sync ERP "Supplier" to CRM "Company"' in plain(response)
    assert toasts(response) == ["ERP Supplier is shown under its standard name."]
    section = text(admin_client.get(url("company", crm["acme"], conn), htmx=True))
    assert ">Supplier</button>" in section


def test_a_too_long_name_is_refused_with_422_and_the_reason_on_the_input(app, admin_client, conn):
    set_label(admin_client, conn, "Vendor")
    response = set_label(admin_client, conn, "V" * 121)
    assert response.status_code == 422
    body = plain(response)
    assert 'id="actor-label-error"' in body and "at most 120 characters (this one has 121)" in body
    assert 'aria-invalid="true"' in body and 'aria-describedby="actor-label-hint actor-label-error"' in body
    assert 'value="' + "V" * 121 + '"' in body  # what was typed stays
    assert stored(app, conn) == "Vendor"  # nothing saved
    # without htmx: the whole page, 422
    page = set_label(admin_client, conn, "V" * 200, htmx=False)
    assert page.status_code == 422 and "<html" in text(page) and "at most 120 characters" in plain(page)


@pytest.mark.parametrize("label, reason", [
    ("Ven\ndor", "control characters"),
    ('US:"Vendor";NO:"Leverandør', 'US:"Vendor";NO:"Leverandør"'),  # an unclosed quote
    ('US:"";NO:""', "at least one language"),
    ("customer", "Customer is already shown as “Customer”"),  # could not be told apart from Customer
])
def test_unusable_names_are_refused(app, admin_client, conn, label, reason):
    response = set_label(admin_client, conn, label)
    assert response.status_code == 422
    assert reason in plain(response)
    assert stored(app, conn) is None


def test_only_admins_may_set_the_name(app, user_client, conn):
    response = set_label(user_client, conn, "Vendor")
    assert response.status_code == 403
    assert stored(app, conn) is None


def test_an_unknown_actor_type_is_404(admin_client, conn):
    assert set_label(admin_client, conn, "Vendor", actor_type="Nonsense").status_code == 404


# ------------------------------------------------------------------------------------- where it shows


@pytest.fixture
def vendor(app, admin_client, conn):
    assert set_label(admin_client, conn, "Vendor").status_code == 200
    return conn


def test_the_erp_tab_connect_links_and_dialogs_say_vendor(app, admin_client, vendor, crm):  # noqa: F811
    acme = crm["acme"]
    section = plain(admin_client.get(url("company", acme, vendor), htmx=True))
    assert 'aria-label="Connect to Vendor in Fake production">Vendor</button>' in section
    assert 'aria-label="Connect to Customer in Fake production">Customer</button>' in section
    assert "/connect/Supplier" in section  # the URL keeps the constant
    assert ">Supplier</button>" not in section

    dialog = plain(admin_client.get(url("company", acme, vendor, "/connect/Supplier"), htmx=True))
    assert "Connect “Acme AS” to Fake production — Vendor" in dialog
    assert "Find the Vendor in the ERP." in dialog

    create = plain(open_create(admin_client, "company", acme, vendor, actor_type="Supplier"))
    assert "Create in ERP “Fake production” — Vendor" in create
    assert "A new Vendor from “Acme AS”" in create


def test_a_connected_vendor_is_named_in_the_heading_and_the_toast(app, admin_client, vendor, crm, fake):  # noqa: F811
    key = fake.add_actor("Supplier", {"name": "Acme AS"})
    response = connect(admin_client, app, "company", crm["acme"], vendor, key, {}, actor_type="Supplier")
    assert response.status_code == 200, text(response)
    assert f"Connected to Vendor {key} on Fake production." in toasts(response)
    assert f"Fake production: connected Vendor {key}" in plain(response)
    with app.app_context():  # stored and sent as the constant
        link = db.session.scalar(select(Link).where(Link.connection_id == vendor))
        assert link.erp_actor_type == "Supplier"
    section = plain(admin_client.get(url("company", crm["acme"], vendor), htmx=True))
    assert f"Fake production: connected Vendor {key}" in section
    assert f"from Vendor {key} on Fake production?" in section  # the Disconnect confirmation
    gone = admin_client.post(url("company", crm["acme"], vendor, "/disconnect"), htmx=True)
    assert f"Disconnected Vendor {key}. Nothing was changed in the ERP." in toasts(gone)


def test_the_name_follows_the_readers_language(app, admin_client, users, conn, crm):  # noqa: F811
    set_label(admin_client, conn, 'US:"Vendor";NO:"Leverandør"')
    section = plain(admin_client.get(url("company", crm["acme"], conn), htmx=True))
    assert ">Vendor</button>" in section
    with app.app_context():
        db.session.get(User, users["alice"]).language = "NO"
        db.session.commit()
    section = plain(admin_client.get(url("company", crm["acme"], conn), htmx=True))
    assert ">Leverandør</button>" in section
    page = plain(admin_client.get(f"/settings/connections/{conn}/mappings?actor=Supplier"))
    assert 'Sync ERP "Leverandør" to CRM "Company"' in page
    assert 'value="US:"Vendor";NO:"Leverandør""' in page  # the input shows what is stored


def test_the_import_offers_the_actor_type_under_its_name(app, admin_client, vendor):
    response = admin_client.get("/settings/import/erp/actor-types", query_string={"connection_id": vendor},
                                htmx=True)
    body = plain(response)
    assert re.search(r'<option value="Supplier"[^>]*>Vendor → CRM company</option>', body), body
    assert re.search(r'<option value="Customer"[^>]*>Customer → CRM company</option>', body), body


def test_the_change_log_and_the_issues_inbox_say_vendor(app, admin_client, vendor, crm):  # noqa: F811
    with app.app_context():
        db.session.add(SyncChange(connection_id=vendor, crm_type="company", crm_id=crm["acme"],
                                  erp_actor_type="Supplier", erp_key="S42", direction="to_crm",
                                  crm_field_key="name", erp_field_key="name", old_value="A", new_value="B"))
        db.session.add(Link(connection_id=vendor, crm_type="company", crm_id=crm["beta"], erp_actor_type="Supplier",
                            erp_key="S43", base={}, status="ok", last_result="Record locked", failures=1))
        db.session.commit()
    log = plain(admin_client.get("/settings/sync/log"))
    assert "Vendor S42" in log and "Supplier S42" not in log
    inbox = plain(admin_client.get("/settings/sync/issues"))
    assert "Company ↔ Vendor S43" in inbox and "from Vendor S43 on Fake production?" in inbox


def test_the_import_run_page_and_the_recent_imports_say_vendor(app, admin_client, vendor):
    with app.app_context():
        now = utcnow()
        run = SyncRun(connection_id=vendor, kind=RunKind.IMPORT, status="succeeded", trigger="manual",
                      options={"connection_id": vendor, "actor_type": "Supplier"}, started_at=now, finished_at=now,
                      counts={"problems": [{"actor_type": "Supplier", "erp_key": "S7", "name": "Nord",
                                            "message": "Refused"}], "problem_count": 1})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    page = plain(admin_client.get(f"/settings/import/runs/{run_id}"))
    assert "Fake production · Vendor" in page and "Vendor S7" in page
    recent = plain(admin_client.get("/settings/import/erp"))
    assert re.search(r"<td>Vendor</td>", recent), recent


def test_other_connections_keep_their_own_names(app, admin_client, vendor, connector_id):  # noqa: F811
    with app.app_context():
        other = Connection(connector_id=connector_id, name="Other", guid="g-other")
        other.actor_types.append(ActorTypeConfig(erp_actor_type="Supplier", crm_type="company"))
        db.session.add(other)
        db.session.commit()
        assert actor_labels.actor_label(other.actor_type("Supplier")) == "Supplier"
        assert actor_labels.actor_label(vendor, "Supplier") == "Vendor"


def test_the_sync_tabs_connection_summary_says_vendor(admin_client, vendor):
    page = plain(admin_client.get(f"/settings/sync?connection={vendor}"))
    assert "<td>Vendor</td>" in page
    assert "<td>Supplier</td>" not in page
