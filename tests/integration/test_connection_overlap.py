"""Two connections on the same ERP client with overlapping mappings (issue #18, point 6.3): a warning, never a
refusal — from ``connection_overlap.overlaps`` (for the Sync tab's panel) and as a toast on activation.

Set-up as in tests/integration/test_erp_tab.py: connections to the fake connector defined through the admin UI,
mappings set in the database (Customer: name, organisation number, e-mail, phone and country both ways)."""

from __future__ import annotations

import json

from portal.extensions import db
from portal.models import Connection, Connector
from portal.services.connection_overlap import overlaps, same_erp
from tests.integration import test_erp_tab as tab

connector_id = tab.connector_id  # a fixture


def _toasts(response) -> list[dict]:
    return json.loads(response.headers.get("HX-Trigger") or "{}").get("toast", [])


# The Customer mapping of test_erp_tab with the directions to the CRM taken away: another active connection already
# syncs those CRM fields, and mapping_problems refuses a second source for a CRM field (the ERP side is not checked)
TO_ERP_ONLY = {key: (crm, False, to_erp, gui, search, rank)
               for key, (crm, _to_crm, to_erp, gui, search, rank) in tab.CUSTOMER_MAP.items()}


def _define_mapped(app, admin_client, connector_id, name, mapping=None, **extra) -> int:
    """A connection with the Customer mapping of test_erp_tab (or ``mapping``), not active."""
    cid = tab.define_connection(admin_client, connector_id, name, **extra)
    with app.app_context():
        tab.set_mapping(cid, "Customer", mapping or tab.CUSTOMER_MAP)
        for other in ("Supplier", "Person", "Project"):
            tab.set_mapping(cid, other, {}, active=False)
        db.session.commit()
    return cid


def test_two_connections_on_the_same_erp_syncing_the_same_fields_warn_each_other(app, admin_client, connector_id,
                                                                               fake):
    first = tab.configure(app, admin_client, connector_id, "Fake production")
    second = _define_mapped(app, admin_client, connector_id, "Fake again",
                            cfg_Company="  acme ", cfg_Region="north")  # the same database, typed differently
    with app.app_context():
        one, two = db.session.get(Connection, first), db.session.get(Connection, second)
        assert same_erp(one, two)
        [warning] = overlaps(two)
        assert warning.startswith("“Fake production” (active) reaches the same ERP as Fake again")
        assert "Customer: Country, E-mail, Name and 2 more to the ERP and Country, E-mail, Name and 2 more to the " \
               "CRM" in warning
        assert "Supplier" not in warning and "Person" not in warning  # switched off on Fake again
        assert "This is allowed" in warning
        [back] = overlaps(one)
        assert back.startswith("“Fake again” (inactive) reaches the same ERP as Fake production")


def test_another_erp_client_or_no_shared_direction_is_no_overlap(app, admin_client, connector_id, fake):
    first = tab.configure(app, admin_client, connector_id, "Fake production")
    other_db = _define_mapped(app, admin_client, connector_id, "Other company", cfg_Company="GLOBEX")
    other_page = _define_mapped(app, admin_client, connector_id, "Other page size", cfg_PageSize="75")
    one_way = _define_mapped(app, admin_client, connector_id, "One way")
    with app.app_context():
        one = db.session.get(Connection, first)
        assert not same_erp(one, db.session.get(Connection, other_db))
        # the rule is "every non-secret value equal": a different page size counts as another client
        assert not same_erp(one, db.session.get(Connection, other_page))
        # Fake production syncs everything both ways; "One way" only to the CRM on fields Fake production does not
        # sync at all, and to the ERP on none
        config = db.session.get(Connection, one_way).actor_type("Customer")
        for erp_field in config.fields:
            erp_field.sync_to_erp = False
            erp_field.sync_to_crm = erp_field.field_key == "name"
        production = one.actor_type("Customer")
        next(f for f in production.fields if f.field_key == "name").sync_to_crm = False
        db.session.commit()
        assert [w for w in overlaps(one) if "One way" in w] == []
        # the same direction on one field is enough
        next(f for f in production.fields if f.field_key == "name").sync_to_crm = True
        db.session.commit()
        [warning] = [w for w in overlaps(one) if "One way" in w]
        assert "Customer: Name to the CRM." in warning


def test_a_switched_off_actor_type_or_a_deleted_connection_is_no_overlap(app, admin_client, connector_id, fake):
    first = tab.configure(app, admin_client, connector_id, "Fake production")
    second = _define_mapped(app, admin_client, connector_id, "Fake again")
    with app.app_context():
        one, two = db.session.get(Connection, first), db.session.get(Connection, second)
        assert len(overlaps(one)) == 1
        two.actor_type("Customer").is_active = False
        db.session.commit()
        assert overlaps(one) == [] and overlaps(two) == []
        two.actor_type("Customer").is_active = True
        two.deleted = True
        db.session.commit()
        assert overlaps(one) == [] and overlaps(two) == []


def test_the_same_service_registered_twice_is_the_same_connector(app, admin_client, connector_id, fake):
    first = tab.configure(app, admin_client, connector_id, "Fake production")
    with app.app_context():
        twin = Connector(name="Fake ERP (again)", url=fake.url.rstrip("/") + "/")
        db.session.add(twin)
        db.session.commit()
        twin_id = twin.id
    _define_mapped(app, admin_client, twin_id, "Through the twin")
    with app.app_context():
        assert [w.split(" (")[0] for w in overlaps(db.session.get(Connection, first))] == ["“Through the twin”"]


def test_activating_an_overlapping_connection_warns_but_activates(app, admin_client, connector_id, fake):
    tab.configure(app, admin_client, connector_id, "Fake production")
    second = _define_mapped(app, admin_client, connector_id, "Fake again", TO_ERP_ONLY)
    response = admin_client.post(f"/settings/connections/{second}/activate", htmx=True)
    assert response.status_code == 200, response.get_data(as_text=True)
    toasts = _toasts(response)
    assert toasts[0]["level"] == "success"
    assert [t["level"] for t in toasts[1:]] == ["warning"]
    assert toasts[1]["message"].startswith("“Fake production” (active) reaches the same ERP as Fake again")
    assert "Customer: Country, E-mail, Name and 2 more to the ERP." in toasts[1]["message"]
    with app.app_context():
        assert db.session.get(Connection, second).active is True


def test_activating_a_connection_to_another_erp_does_not_warn(app, admin_client, connector_id, fake):
    tab.configure(app, admin_client, connector_id, "Fake production")
    other = _define_mapped(app, admin_client, connector_id, "Other company", TO_ERP_ONLY, cfg_Company="GLOBEX")
    response = admin_client.post(f"/settings/connections/{other}/activate", htmx=True)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [t["level"] for t in _toasts(response)] == ["success"]


def test_the_sync_tab_templates_can_ask_for_the_warnings(app, admin_client, connector_id, fake):
    first = tab.configure(app, admin_client, connector_id, "Fake production")
    _define_mapped(app, admin_client, connector_id, "Fake again")
    with app.test_request_context("/settings/sync"):  # a request of the admin blueprint
        from flask import render_template_string

        html = render_template_string("{% for w in connection_overlaps(c) %}<p>{{ w }}</p>{% endfor %}",
                                      c=db.session.get(Connection, first))
    assert html.startswith("<p>“Fake again” (inactive) reaches the same ERP as Fake production")
