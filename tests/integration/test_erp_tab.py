"""The ERP tab on Company, Contact and Project screens (issue #5), against the fake connector over real HTTP.

A connection is defined through the admin UI (test before save), then its mappings are set directly in the
database (the mapping screens are another issue) and it is activated.

Fake ERP data used throughout: Customer "Acme AS" whose e-mail and organisation number differ from the CRM
company "Acme AS" (phone, name and country agree).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Company,
    Connection,
    ConnectionAccess,
    Contact,
    CrmList,
    Link,
    LinkStatus,
    ListItem,
    ListItemMapping,
    Project,
    SyncChange,
    SyncRun,
    SyncSettings,
    User,
    UserGroup,
)
from portal.services.erp_visibility import erp_tab_visible
from tests.conftest import form_of
from tests.integration import helpers_mapping

CONFIG = {"cfg_Company": "ACME", "cfg_ApiKey": "s3cret-key", "cfg_Region": "north", "cfg_PageSize": "50"}

# ERP field key -> (crm field, to_crm, to_erp, show_in_gui, show_in_search, rank)
CUSTOMER_MAP = {
    "name": ("name", True, True, True, True, 1),
    "orgnr": ("vat_no", True, True, True, True, 2),
    "email": ("email", True, True, False, False, 3),
    "phone": ("phone", True, True, False, False, 4),
    "country": ("country_id", True, True, True, True, 5),
    "creditlimit": (None, False, False, True, False, 6),
}
PERSON_MAP = {
    "firstname": ("first_name", True, True, True, True, 1),
    "lastname": ("last_name", True, True, True, True, 2),
    "email": ("email", True, True, True, False, 3),
}


# ------------------------------------------------------------------------------------------------ fixtures


def _token(html: str) -> str:
    marker = 'name="test_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def define_connection(admin_client, connector_id: int, name: str = "Fake production", **extra) -> int:
    data = {"name": name, "connector_id": str(connector_id), "description": "", "scope": "everyone",
            "all_can_create": "1", "conflict_policy": "priority", **CONFIG, **extra}
    tested = admin_client.post("/settings/connections/new", data={**data, "action": "test"}, htmx=True)
    assert tested.status_code == 200, tested.get_data(as_text=True)
    saved = admin_client.post("/settings/connections/new",
                              data={**data, "action": "save", "test_token": _token(tested.get_data(as_text=True))},
                              htmx=True)
    assert saved.status_code == 200 and "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    return int(saved.headers["HX-Redirect"].split("connection=")[1])


def set_mapping(connection_id: int, actor_type: str, mapping: dict, *, active: bool = True, **field_options):
    """Mappings straight into the database (issue #3 owns the screens)."""
    connection = db.session.get(Connection, connection_id)
    config = connection.actor_type(actor_type)
    config.is_active = active
    by_key = {f.field_key: f for f in config.fields}
    for f in config.fields:
        f.crm_field, f.sync_to_crm, f.sync_to_erp, f.show_in_gui, f.show_in_search = None, False, False, False, False
    for key, (crm, to_crm, to_erp, gui, search, rank) in mapping.items():
        f = by_key[key]
        f.crm_field, f.sync_to_crm, f.sync_to_erp, f.show_in_gui, f.show_in_search, f.rank = (
            crm, to_crm, to_erp, gui, search, rank)
    for key, options in field_options.items():
        for attr, value in options.items():
            setattr(by_key[key], attr, value)
    return config


def activate(connection_id: int) -> None:
    from portal.services.sync_settings import ensure_in_priority

    db.session.get(Connection, connection_id).active = True
    ensure_in_priority(connection_id)
    db.session.commit()


def list_id(list_name: str, name: str) -> int:
    return db.session.scalar(select(ListItem.id).where(ListItem.list_name == list_name, ListItem.name == name))


def map_countries(connection_id: int, actor_type: str = "Customer") -> None:
    config = db.session.get(Connection, connection_id).actor_type(actor_type)
    country = next(f for f in config.fields if f.field_key == "country")
    for key, name in (("NO", "Norway"), ("SE", "Sweden")):
        country.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=name,
                                                     crm_item_id=list_id(CrmList.COUNTRY, name)))


connector_id = helpers_mapping.connector  # a connector row for the fake (the ``fake`` fixtures: tests/conftest.py)


def configure(app, admin_client, connector_id, name="Fake production", *, ask_credit=True, **extra) -> int:
    connection_id = define_connection(admin_client, connector_id, name, **extra)
    with app.app_context():
        options = {"employees": {"has_default": True, "default_value": 10}}
        if ask_credit:
            options["creditlimit"] = {"ask_user": True, "has_default": True, "default_value": 5000.0,
                                      "mandatory": True}
        set_mapping(connection_id, "Customer", CUSTOMER_MAP, **options)
        set_mapping(connection_id, "Supplier", {"name": ("name", True, True, True, True, 1)})
        set_mapping(connection_id, "Person", PERSON_MAP)
        set_mapping(connection_id, "Project", {}, active=False)
        map_countries(connection_id)
        db.session.commit()
        activate(connection_id)
    return connection_id


@pytest.fixture
def conn(app, admin_client, connector_id, fake):
    return configure(app, admin_client, connector_id)


@pytest.fixture
def crm(app):
    with app.app_context():
        norway = list_id(CrmList.COUNTRY, "Norway")
        acme = Company(name="Acme AS", email="post@acme.example", phone="+47 22 00 00 00", country_id=norway)
        beta = Company(name="Beta Bygg AS", email="beta@example.com", phone="+47 33", country_id=norway)
        db.session.add_all([acme, beta])
        db.session.flush()
        ola = Contact(company_id=acme.id, first_name="Ola", last_name="Nordmann", email="ola@acme.example")
        kari = Contact(company_id=beta.id, first_name="Kari", last_name="Hansen", email="kari@beta.example")
        loner = Contact(first_name="Solo", last_name="Person")
        project = Project(name="Bridge")
        db.session.add_all([ola, kari, loner, project])
        db.session.commit()
        return {"acme": acme.id, "beta": beta.id, "ola": ola.id, "kari": kari.id, "loner": loner.id,
                "project": project.id}


@pytest.fixture
def acme_key(fake, conn):
    return fake.add_actor("Customer", {"name": "Acme AS", "orgnr": "912345678", "email": "invoice@acme.example",
                                       "phone": "+47 22 00 00 00", "country": "NO", "creditlimit": 25000.0})


def url(crm_type: str, record_id: int, connection_id: int | None = None, tail: str = "") -> str:
    base = f"/erp/{crm_type}/{record_id}"
    if connection_id is not None:
        base += f"/connections/{connection_id}"
    return base + tail


def text(response) -> str:
    return response.get_data(as_text=True)


def toasts(response) -> list[dict]:
    header = response.headers.get("HX-Trigger")
    return json.loads(header).get("toast", []) if header else []


def link_of(app, crm_type: str, crm_id: int, connection_id: int) -> Link | None:
    with app.app_context():
        link = db.session.scalar(select(Link).where(Link.connection_id == connection_id, Link.crm_type == crm_type,
                                                    Link.crm_id == crm_id))
        if link is not None:
            db.session.expunge(link)
        return link


def nonce_of(html: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', html).group(1)


def pick_names(app, connection_id: int, actor_type: str = "Customer") -> dict[str, str]:
    with app.app_context():
        config = db.session.get(Connection, connection_id).actor_type(actor_type)
        return {f.field_key: f"pick_{f.id}" for f in config.fields}


def ask_name(app, connection_id: int, key: str, actor_type: str = "Customer") -> str:
    with app.app_context():
        config = db.session.get(Connection, connection_id).actor_type(actor_type)
        return next(f"ask_{f.id}" for f in config.fields if f.field_key == key)


def open_compare(client, crm_type, record_id, connection_id, erp_key, actor_type="Customer"):
    response = client.get(url(crm_type, record_id, connection_id, f"/connect/{actor_type}/compare"),
                          query_string={"erp_key": erp_key}, htmx=True)
    assert response.status_code == 200, text(response)
    return response


def connect(client, app, crm_type, record_id, connection_id, erp_key, picks: dict, answers: dict | None = None,
            actor_type="Customer"):
    html = text(open_compare(client, crm_type, record_id, connection_id, erp_key, actor_type))
    data = form_of(html)
    names = pick_names(app, connection_id, actor_type)
    data.update({names[key]: side for key, side in picks.items()})
    for key, value in (answers or {}).items():
        data[ask_name(app, connection_id, key, actor_type)] = value
    return client.post(url(crm_type, record_id, connection_id, f"/connect/{actor_type}"), data=data, htmx=True)


def search_proof(client, crm_type, record_id, connection_id, actor_type="Customer", nonce="n" * 24) -> str:
    """Search in the dialog (as the page does before offering Create) and return the proof its Create button
    carries ("" when the search was refused or offered no Create)."""
    response = client.get(url(crm_type, record_id, connection_id, f"/connect/{actor_type}/search"),
                          query_string={"q": "", "nonce": nonce}, htmx=True)
    found = re.search(r"[?&;]proof=([A-Za-z0-9_.-]+)", text(response))
    return found.group(1) if found else ""


def open_create(client, crm_type, record_id, connection_id, actor_type="Customer", nonce="n" * 24,
                proof: str | None = None):
    """The Create form, reached as the page reaches it: from a search's results (``proof``: that search's proof;
    by default a search runs first)."""
    if proof is None:
        proof = search_proof(client, crm_type, record_id, connection_id, actor_type, nonce)
    response = client.get(url(crm_type, record_id, connection_id, f"/create/{actor_type}"),
                          query_string={"nonce": nonce, "proof": proof}, htmx=True)
    return response


def create(client, app, crm_type, record_id, connection_id, answers: dict | None = None, actor_type="Customer",
           nonce="n" * 24, proof: str | None = None):
    """Post the Create form (``proof``: of a search in the same dialog; by default a search runs first)."""
    if proof is None:
        proof = search_proof(client, crm_type, record_id, connection_id, actor_type, nonce)
    data = {"nonce": nonce, "proof": proof}
    for key, value in (answers or {}).items():
        data[ask_name(app, connection_id, key, actor_type)] = value
    return client.post(url(crm_type, record_id, connection_id, f"/create/{actor_type}"), data=data, htmx=True)


# -------------------------------------------------------------------------------------------- visibility


def test_licensed_user_in_scope_sees_the_tab_where_mappings_cover_the_record_type(app, conn, crm, users):
    with app.app_context():
        bob, carol = db.session.get(User, users["bob"]), db.session.get(User, users["carol"])
        assert erp_tab_visible(bob, "company", crm["acme"]) is True
        assert erp_tab_visible(bob, "contact", crm["ola"]) is True
        assert erp_tab_visible(bob, "project", crm["project"]) is False  # Project actor type not active
        assert erp_tab_visible(carol, "company", crm["acme"]) is False  # no licence
        assert erp_tab_visible(None, "company", crm["acme"]) is False


def test_the_crm_page_shows_the_erp_tab_only_to_licensed_users(user_client, outsider_client, conn, crm):
    assert 'id="tab-erp"' in text(user_client.get(f"/companies/{crm['acme']}"))
    assert 'id="tab-erp"' not in text(outsider_client.get(f"/companies/{crm['acme']}"))
    page = text(user_client.get(f"/companies/{crm['acme']}?tab=erp"))
    assert f'hx-get="/erp/company/{crm["acme"]}"' in page


def test_no_tab_while_the_connection_is_inactive_or_the_actor_type_is_off(app, conn, crm, users):
    with app.app_context():
        bob = db.session.get(User, users["bob"])
        connection = db.session.get(Connection, conn)
        connection.active = False
        db.session.commit()
        assert erp_tab_visible(bob, "company", crm["acme"]) is False
        connection.active = True
        for config in connection.actor_types:
            if config.crm_type == "company":
                config.is_active = False
        db.session.commit()
        assert erp_tab_visible(bob, "company", crm["acme"]) is False
        assert erp_tab_visible(bob, "contact", crm["ola"]) is True


def test_unlicensed_user_is_refused_on_every_erp_url(outsider_client, conn, crm, acme_key):
    cid = conn
    gets = ["", f"/connections/{cid}", f"/connections/{cid}/values", f"/connections/{cid}/connect/Customer",
            f"/connections/{cid}/connect/Customer/search?q=", f"/connections/{cid}/create/Customer"]
    for tail in gets:
        response = outsider_client.get(url("company", crm["acme"]) + tail, htmx=True)
        assert response.status_code == 403, tail
        assert "ERP Sync licence" in toasts(response)[0]["message"]
    for tail in ("/connect/Customer", "/create/Customer", "/disconnect", "/sync"):
        response = outsider_client.post(url("company", crm["acme"], cid, tail), data={"erp_key": acme_key},
                                        htmx=True)
        assert response.status_code == 403, tail


def test_panel_lists_connections_in_sync_priority_order(app, admin_client, user_client, connector_id, conn, crm):
    second = configure(app, admin_client, connector_id, "Fake staging")
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert html.index("Fake production: not connected") < html.index("Fake staging: not connected")
    with app.app_context():
        db.session.get(SyncSettings, 1).priority = [second, 0, conn]
        db.session.commit()
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert html.index("Fake staging: not connected") < html.index("Fake production: not connected")
    assert html.count("<section") == 2 and 'id="erp-dialog"' in html and 'aria-labelledby="erp-dialog-title"' in html


def test_plain_request_for_the_panel_goes_to_the_record_page(user_client, conn, crm):
    response = user_client.get(url("company", crm["acme"]))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/companies/{crm['acme']}?tab=erp")


def test_user_outside_the_scope_gets_no_section_and_is_refused(app, admin_client, user_client, connector_id, crm,
                                                               users, fake, acme_key):
    restricted = configure(app, admin_client, connector_id, "Finance only", scope="specific",
                           **{f"scope_user_{users['alice']}": "create"})
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert "Fake production" in html and "Finance only" not in html
    for tail in ("", "/values", "/connect/Customer", "/create/Customer"):
        response = user_client.get(url("company", crm["acme"], restricted, tail), htmx=True)
        assert response.status_code == 403, tail
        assert "do not have access" in toasts(response)[0]["message"]
    response = user_client.post(url("company", crm["acme"], restricted, "/connect/Customer"),
                                data={"erp_key": acme_key}, htmx=True)
    assert response.status_code == 403
    assert not fake.calls_to("SaveActors") and link_of(app, "company", crm["acme"], restricted) is None


def test_scope_through_a_group_grants_connect_and_create(app, admin_client, user_client, connector_id, crm, users):
    with app.app_context():
        group = UserGroup(name="Sales")
        group.members.append(db.session.get(User, users["bob"]))
        db.session.add(group)
        db.session.commit()
        group_id = group.id
    cid = configure(app, admin_client, connector_id, "Group scoped", scope="specific",
                    **{f"scope_group_{group_id}": "create"})
    with app.app_context():
        assert [(a.group_id, a.can_create) for a in db.session.get(Connection, cid).access] == [(group_id, True)]
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert "Group scoped: not connected" in html and "Connect to:" in html
    assert open_create(user_client, "company", crm["acme"], cid).status_code == 200


# -------------------------------------------------------------------------------------------- view


def test_unconnected_company_offers_only_the_mapped_actor_types(user_client, conn, crm):
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert "Connect to:" in html
    assert ">Customer</button>" in html and ">Supplier</button>" in html and ">Person</button>" not in html
    contact = text(user_client.get(url("contact", crm["ola"]), htmx=True))
    assert "Connect the company Acme AS to Fake production first" in contact and ">Person</button>" not in contact


def test_linked_company_shows_live_values_in_rank_order_with_list_texts(app, user_client, conn, crm, acme_key,
                                                                          fake):
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                       {"creditlimit": "25000"})
    assert response.status_code == 200, text(response)
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert f"Fake production: connected Customer {acme_key}" in html
    assert "Last sync:" in html and "Linked by Bob User" in html
    assert f'hx-get="/erp/company/{crm["acme"]}/connections/{conn}/values"' in html and 'aria-busy="true"' in html
    values = user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True)
    body = text(values)
    assert values.status_code == 200
    labels = re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", body)
    assert labels == [("Name", "Acme AS"), ("Organisation number", "912345678"), ("Country", "Norway"),
                      ("Credit limit", "25000")]
    assert fake.calls_to("GetActors")[-1]["FieldKeys"] == ["name", "orgnr", "country", "creditlimit"]
    assert fake.calls_to("GetListItems")[-1]["ListItemKeys"] == ["NO"]


def test_values_of_a_broken_connector_show_a_readable_error_with_retry(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    fake.fail_next(3, status=503)
    response = user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True)
    body = text(response)
    assert response.status_code == 200
    assert "could not be loaded from Fake production" in body and "internal error (HTTP 503)" in body
    assert ">Retry</button>" in body and f'hx-get="/erp/company/{crm["acme"]}/connections/{conn}/values"' in body
    fake.clear_faults()
    assert "Acme AS" in text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))


def test_a_slow_connector_times_out_quickly_without_holding_the_panel(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    app.config["ERP_TAB_TIMEOUT"] = 0.3
    fake.delay(2, method="GetActors")
    calls = len(fake.calls)
    panel = user_client.get(url("company", crm["acme"]), htmx=True)  # never calls the connector
    assert panel.status_code == 200 and len(fake.calls) == calls
    body = text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))
    fake.delay(0)
    assert "did not answer within 0.3 s" in body and ">Retry</button>" in body


def test_connector_warning_is_shown_with_the_values(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    fake.reply_warning("GetActors", "ERP offline; cached data")
    body = text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))
    assert "ERP offline; cached data" in body and "Acme AS" in body


def test_actor_deleted_in_the_erp_marks_the_link_broken_and_offers_disconnect(app, user_client, conn, crm, acme_key,
                                                                             fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    fake.delete_actor("Customer", acme_key)
    body = text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))
    # the read broke the link: the values ask for the whole section again (its heading and message change)
    assert f'hx-get="/erp/company/{crm["acme"]}/connections/{conn}"' in body and "no longer has" not in body
    assert link_of(app, "company", crm["acme"], conn).status == LinkStatus.BROKEN
    section = text(user_client.get(url("company", crm["acme"], conn), htmx=True))
    assert ">Disconnect</button>" in section and f"Fake production: link broken — Customer {acme_key}" in section
    assert section.count("no longer has") == 1
    assert "no longer has" not in text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))
    response = user_client.post(url("company", crm["acme"], conn, "/disconnect"), htmx=True)
    assert response.status_code == 200 and "Fake production: not connected" in text(response)
    assert link_of(app, "company", crm["acme"], conn) is None


def test_an_actor_back_in_the_erp_restores_the_link_with_a_full_merge_due(app, user_client, conn, crm, acme_key,
                                                                          fake):
    """Back from broken, the link gets a retry due now: the next sync merges the record in full, so CRM edits made
    while it was broken are not left behind the connection's CRM mark (which only looks at later saves)."""
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    stored = fake.get_actor("Customer", acme_key)
    fake.delete_actor("Customer", acme_key)
    user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True)
    assert link_of(app, "company", crm["acme"], conn).status == LinkStatus.BROKEN
    fake.add_actor("Customer", stored["FieldValues"], erp_key=acme_key, last_modified=stored["LastModified"])
    before = utcnow()
    body = text(user_client.get(url("company", crm["acme"], conn, "/values"), htmx=True))
    assert "no longer has" not in body
    link = link_of(app, "company", crm["acme"], conn)
    assert link.status == LinkStatus.OK and link.retry_at is not None and link.retry_at >= before


def test_last_sync_conflicts_are_shown(app, user_client, conn, crm, acme_key):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    link = link_of(app, "company", crm["acme"], conn)
    with app.app_context():
        run = SyncRun(connection_id=conn, status="succeeded")
        db.session.add(run)
        db.session.flush()
        db.session.add(SyncChange(run_id=run.id, connection_id=conn, link_id=link.id, crm_type="company",
                                  crm_id=crm["acme"], direction="to_crm", erp_field_key="email",
                                  crm_field_key="email", old_value="a@x", new_value="b@x", other_value="a@x",
                                  conflict=True, rule="ERP wins (conflict policy: ERP wins)"))
        db.session.commit()
    html = text(user_client.get(url("company", crm["acme"], conn), htmx=True))
    assert "Conflict at the last sync" in html and "kept “b@x”, overwrote “a@x”" in html and "ERP wins" in html


# -------------------------------------------------------------------------------------------- search


def test_connect_dialog_is_prefilled_and_search_runs_with_the_show_in_search_fields(app, user_client, conn, crm,
                                                                                     acme_key, fake):
    fake.add_actor("Customer", {"name": "Acme Holding", "orgnr": "1", "country": "SE"})
    fake.add_actor("Customer", {"name": "Other AS"})
    dialog = user_client.get(url("company", crm["acme"], conn, "/connect/Customer"), htmx=True)
    html = text(dialog)
    assert dialog.status_code == 200
    assert "Connect “Acme AS” to Fake production" in html and 'id="erp-dialog-title"' in html
    assert 'value="Acme AS"' in html and 'hx-trigger="load, submit"' in html
    assert "Advanced search" in html  # the fake has searchable fields
    nonce = nonce_of(html)
    results = user_client.get(url("company", crm["acme"], conn, "/connect/Customer/search"),
                              query_string={"q": "Acme", "nonce": nonce}, htmx=True)
    body = text(results)
    assert fake.calls_to("SearchActors")[-1]["SearchText"] == "Acme"
    assert fake.calls_to("SearchActors")[-1]["FieldKeys"] == ["name", "orgnr", "country"]
    headers = re.findall(r'<th scope="col">([^<]+)</th>', body)
    assert headers == ["ERP key", "Name", "Organisation number", "Country"]
    assert "Acme AS" in body and "Acme Holding" in body and "Other AS" not in body
    assert "Sweden" in body  # list values turned into text
    assert body.count(">Select</button>") == 2
    assert "Can't find a match — create in ERP" in body and f"nonce={nonce}" in body
    everything = text(user_client.get(url("company", crm["acme"], conn, "/connect/Customer/search"),
                                      query_string={"q": ""}, htmx=True))
    assert "Other AS" in everything and fake.calls_to("SearchActors")[-1]["SearchText"] == ""


def test_search_with_the_connector_down_shows_an_error_in_the_dialog(user_client, conn, crm, fake, app):
    fake.fail_next(5, status=500)
    response = user_client.get(url("company", crm["acme"], conn, "/connect/Customer/search"),
                               query_string={"q": "Acme"}, htmx=True)
    body = text(response)
    assert response.status_code == 200 and 'role="alert"' in body
    assert "The ERP search failed: The connector failed with an internal error (HTTP 500)." in body
    assert ">Retry</button>" in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 0


def test_advanced_search_offers_operators_per_type_and_sends_restrictions(app, user_client, conn, crm, acme_key,
                                                                          fake):
    fake.add_actor("Customer", {"name": "Zeta AS", "orgnr": "5"})
    form = text(user_client.get(url("company", crm["acme"], conn, "/connect/Customer/advanced"), htmx=True))
    assert "begins with" in form and "does not contain" in form and "is between" in form
    with app.app_context():
        config = db.session.get(Connection, conn).actor_type("Customer")
        name_id = next(f.id for f in config.fields if f.field_key == "name")
    query = {f"use_{name_id}": "1", f"op_{name_id}": "begins", f"v_{name_id}": "zet"}
    body = text(user_client.get(url("company", crm["acme"], conn, "/connect/Customer/advanced/search"),
                                query_string=query, htmx=True))
    assert fake.calls_to("SearchActorsAdvanced")[-1]["Restrictions"] == [
        {"FieldKey": "name", "Operator": "begins", "Values": ["zet"]}]
    assert "Zeta AS" in body and "Acme AS" not in body
    bad = user_client.get(url("company", crm["acme"], conn, "/connect/Customer/advanced/search"),
                          query_string={f"use_{name_id}": "1", f"op_{name_id}": "oneof", f"v_{name_id}": "x"},
                          htmx=True)
    assert bad.status_code == 422 and "Choose how to compare Name" in text(bad)
    none = user_client.get(url("company", crm["acme"], conn, "/connect/Customer/advanced/search"), htmx=True)
    assert none.status_code == 422 and "Tick at least one criterion" in text(none)


def test_search_marks_actors_already_linked_to_another_record(app, user_client, conn, crm, acme_key):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    body = text(user_client.get(url("company", crm["beta"], conn, "/connect/Customer/search"),
                                query_string={"q": "Acme"}, htmx=True))
    assert "Linked to the company Acme AS" in body and ">Select</button>" not in body


# -------------------------------------------------------------------------------------------- compare + connect


def test_compare_lists_only_the_differing_mapped_fields_and_the_ask_user_fields(user_client, conn, crm, acme_key):
    html = text(open_compare(user_client, "company", crm["acme"], conn, acme_key))
    assert "Select correct field values for linked company" in html
    rows = re.findall(r'<th scope="row">([^<\n]+)', html)
    assert [r.strip() for r in rows] == ["Organisation number", "E-mail"]
    assert "post@acme.example" in html and "invoice@acme.example" in html
    assert "(blank)" in html and "912345678" in html  # CRM VAT number is blank
    assert "Use all CRM values" in html and "Use all ERP values" in html
    assert 'name="ask_' in html and "Credit limit" in html and 'value="25000"' in html  # ERP's current value
    assert "required" in html.split("Credit limit")[1][:400]


def test_connect_writes_the_chosen_values_to_both_sides_and_stores_the_base(app, user_client, conn, crm, acme_key,
                                                                            fake):
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key,
                       {"email": "crm", "orgnr": "erp"}, {"creditlimit": "30000"})
    assert response.status_code == 200, text(response)
    assert response.headers["HX-Retarget"] == f"#erp-conn-{conn}"
    trigger = json.loads(response.headers["HX-Trigger"])
    assert "close-dialog" in trigger and trigger["toast"][0]["level"] == "success"
    assert f"Connected to Customer {acme_key} on Fake production" in text(response)
    saved = fake.calls_to("SaveActors")
    assert len(saved) == 1
    assert saved[0]["Actors"][0]["FieldValues"] == {"email": "post@acme.example", "creditlimit": 30000.0}
    stored = fake.get_actor("Customer", acme_key)
    assert stored["FieldValues"]["email"] == "post@acme.example" and stored["FieldValues"]["creditlimit"] == 30000.0
    with app.app_context():
        company = db.session.get(Company, crm["acme"])
        assert company.vat_no == "912345678" and company.email == "post@acme.example"
        link = db.session.scalar(select(Link))
        assert (link.crm_type, link.crm_id, link.erp_actor_type, link.erp_key) == (
            "company", crm["acme"], "Customer", acme_key)
        assert link.erp_last_modified == stored["LastModified"]
        assert link.base == {"name": "Acme AS", "orgnr": "912345678", "email": "post@acme.example",
                             "phone": "+47 22 00 00 00", "country": "NO"}
        assert link.crm_synced_at == company.updated_at
        assert link.status == LinkStatus.OK and link.last_synced_at is not None
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "erp.link"))
        assert event.object_type == "company" and event.object_id == crm["acme"]
        assert event.actor_label == "bob@example.com" and event.after["to_erp"] == ["creditlimit", "email"]


def test_all_erp_values_need_no_save_of_mapped_fields(app, user_client, conn, crm, acme_key, fake):
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                       {"creditlimit": "25000"})
    assert response.status_code == 200, text(response)
    assert not fake.calls_to("SaveActors")  # nothing differs on the ERP side: no write at all
    with app.app_context():
        assert db.session.get(Company, crm["acme"]).email == "invoice@acme.example"
        assert db.session.scalar(select(Link)).erp_last_modified == fake.get_actor("Customer", acme_key)[
            "LastModified"]


def test_connect_without_a_choice_or_a_mandatory_answer_is_refused_with_messages(app, user_client, conn, crm,
                                                                                 acme_key, fake):
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key, {"orgnr": "erp"},
                       {"creditlimit": "25000"})
    assert response.status_code == 422
    assert "Choose the value to keep for E-mail" in text(response)
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key,
                       {"orgnr": "erp", "email": "erp"}, {"creditlimit": ""})
    assert response.status_code == 422 and "Credit limit is required." in text(response)
    response = connect(user_client, app, "company", crm["acme"], conn, acme_key,
                       {"orgnr": "erp", "email": "erp"}, {"creditlimit": "lots"})
    assert response.status_code == 422 and "is not a number" in text(response)
    assert not fake.calls_to("SaveActors")
    assert link_of(app, "company", crm["acme"], conn) is None


def test_connect_with_the_connector_down_stores_nothing(app, user_client, conn, crm, acme_key, fake):
    html = text(open_compare(user_client, "company", crm["acme"], conn, acme_key))
    data = form_of(html)
    names = pick_names(app, conn)
    data.update({names["email"]: "erp", names["orgnr"]: "crm", ask_name(app, conn, "creditlimit"): "1"})
    fake.reply_error("SaveActors", "Record locked by another user", error_code="LOCKED")
    response = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"), data=data, htmx=True)
    body = text(response)
    assert response.status_code == 200 and 'role="alert"' in body
    assert "could not be updated, so nothing was linked: Record locked by another user" in body
    assert link_of(app, "company", crm["acme"], conn) is None
    with app.app_context():
        assert db.session.get(Company, crm["acme"]).email == "post@acme.example"  # the CRM is untouched
    assert fake.get_actor("Customer", acme_key)["FieldValues"]["orgnr"] == "912345678"
    fake.fail_next(5, status=503)
    response = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"), data=data, htmx=True)
    assert "could not be read" in text(response) and link_of(app, "company", crm["acme"], conn) is None


def test_a_change_in_the_erp_after_the_comparison_asks_the_user_again(app, user_client, conn, crm, acme_key, fake):
    html = text(open_compare(user_client, "company", crm["acme"], conn, acme_key))
    data = form_of(html)
    names = pick_names(app, conn)
    data.update({names["email"]: "crm", names["orgnr"]: "erp", ask_name(app, conn, "creditlimit"): "1"})
    fake.update_actor("Customer", acme_key, {"phone": "+47 99 99 99 99"})
    response = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"), data=data, htmx=True)
    body = text(response)
    assert response.status_code == 409 and "changed in the CRM or the ERP while you were choosing" in body
    assert "+47 99 99 99 99" in body  # the phone now differs and is offered
    assert not fake.calls_to("SaveActors") and link_of(app, "company", crm["acme"], conn) is None


def test_double_submitted_connect_links_once(app, user_client, conn, crm, acme_key, fake):
    html = text(open_compare(user_client, "company", crm["acme"], conn, acme_key))
    data = form_of(html)
    names = pick_names(app, conn)
    data.update({names["email"]: "crm", names["orgnr"]: "erp", ask_name(app, conn, "creditlimit"): "1"})
    first = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"), data=data, htmx=True)
    second = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"), data=data, htmx=True)
    assert first.status_code == second.status_code == 200
    assert f"Already connected to Customer {acme_key}" in text(second)
    assert len(fake.calls_to("SaveActors")) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 1


def test_one_link_per_record_and_one_record_per_actor(app, user_client, conn, crm, acme_key, fake):
    other = fake.add_actor("Customer", {"name": "Acme AS", "email": "post@acme.example", "country": "NO",
                                        "phone": "+47 22 00 00 00", "creditlimit": 1.0})
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    saves = len(fake.calls_to("SaveActors"))
    again = user_client.get(url("company", crm["acme"], conn, "/connect/Customer/compare"),
                            query_string={"erp_key": other}, htmx=True)
    assert f"This record is already linked to Customer {acme_key} on this connection." in text(again)
    refused = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"),
                               data={"erp_key": other, "erp_stamp": "x", "crm_stamp": "y"}, htmx=True)
    assert f"already linked to Customer {acme_key}" in text(refused)
    taken = user_client.get(url("company", crm["beta"], conn, "/connect/Customer/compare"),
                            query_string={"erp_key": acme_key}, htmx=True)
    assert f"Customer {acme_key} is already linked to the company Acme AS." in text(taken)
    taken = user_client.post(url("company", crm["beta"], conn, "/connect/Customer"),
                             data={"erp_key": acme_key, "erp_stamp": "x", "crm_stamp": "y"}, htmx=True)
    assert "already linked to the company Acme AS" in text(taken)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 1
    assert len(fake.calls_to("SaveActors")) == saves


def test_a_record_may_be_linked_on_two_connections(app, admin_client, user_client, connector_id, conn, crm,
                                                   acme_key):
    second = configure(app, admin_client, connector_id, "Fake staging")
    assert connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                   {"creditlimit": "1"}).status_code == 200
    response = connect(user_client, app, "company", crm["acme"], second, acme_key, {"orgnr": "erp"},
                       {"creditlimit": "1"})
    assert response.status_code == 200, text(response)
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert html.count(f"connected Customer {acme_key}") == 2


# -------------------------------------------------------------------------------------------- create


def test_create_form_asks_the_ask_user_fields_with_the_mandatory_ones_required(user_client, conn, crm):
    response = open_create(user_client, "company", crm["beta"], conn)
    html = text(response)
    assert response.status_code == 200
    assert "Create in ERP “Fake production”" in html and "Credit limit" in html
    assert re.search(r'<input[^>]*name="ask_\d+"[^>]*required', html)
    assert 'value="5000"' in html  # the admin's default
    assert "Beta Bygg AS" in html and "Employees" in html  # what will be sent (CRM value + admin default)


def test_create_sends_crm_values_defaults_and_answers_then_links(app, user_client, conn, crm, fake):
    missing = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": ""})
    assert missing.status_code == 422 and "Credit limit is required." in text(missing)
    assert not fake.calls_to("CreateActor")
    response = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "12000.5"})
    assert response.status_code == 200, text(response)
    sent = fake.calls_to("CreateActor")
    assert len(sent) == 1
    assert sent[0]["Actor"]["FieldValues"] == {"name": "Beta Bygg AS", "email": "beta@example.com",
                                               "phone": "+47 33", "country": "NO", "employees": 10,
                                               "creditlimit": 12000.5}
    assert sent[0]["IdempotencyKey"].startswith("erp-tab-")
    created = fake.service.created[0]
    link = link_of(app, "company", crm["beta"], conn)
    assert link.erp_key == created["ErpKey"] and link.erp_last_modified == created["LastModified"]
    assert link.base == {"name": "Beta Bygg AS", "orgnr": None, "email": "beta@example.com", "phone": "+47 33",
                         "country": "NO"}  # both sides agree the organisation number is blank
    assert f"Created Customer {created['ErpKey']} on Fake production" in text(response)
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "erp.create"))
        assert event is not None and event.object_id == crm["beta"]


def test_double_submitted_create_makes_one_actor_and_one_link(app, user_client, conn, crm, fake):
    first = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"}, nonce="a" * 24)
    second = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"}, nonce="a" * 24)
    assert first.status_code == second.status_code == 200
    assert "Already connected to Customer" in text(second)
    assert len(fake.service.created) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 1


def test_a_retried_create_after_a_lost_answer_returns_the_same_actor(app, user_client, conn, crm, fake):
    app.config["ERP_TAB_TIMEOUT"] = 0.3
    # Both attempts (the client retries once, with the same key) reach the ERP but answer too late.
    fake.delay(1.0, method="CreateActor", times=2, after_processing=True)
    first = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"}, nonce="b" * 24)
    assert first.status_code == 200 and "could not be created in the ERP" in text(first)
    assert link_of(app, "company", crm["beta"], conn) is None
    second = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"}, nonce="b" * 24)
    assert second.status_code == 200, text(second)
    assert len(fake.service.created) == 1
    keys = {body["IdempotencyKey"] for body in fake.calls_to("CreateActor")}
    assert len(keys) == 1
    assert link_of(app, "company", crm["beta"], conn).erp_key == fake.service.created[0]["ErpKey"]


def test_create_with_the_connector_down_stores_nothing(app, user_client, conn, crm, fake):
    fake.reply_error("CreateActor", "The ERP is closed for year-end", error_code="CLOSED")
    response = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"})
    body = text(response)
    assert response.status_code == 200 and "could not be created in the ERP: The ERP is closed for year-end" in body
    assert not fake.service.created and link_of(app, "company", crm["beta"], conn) is None
    proof = search_proof(user_client, "company", crm["beta"], conn)  # searched while the connector was up
    fake.fail_next(10, status=503)  # the connector is down altogether
    response = create(user_client, app, "company", crm["beta"], conn, {"creditlimit": "1"}, proof=proof)
    body = text(response)
    fake.clear_faults()
    assert response.status_code == 200 and "could not be created in the ERP: The connector failed" in body
    assert ">Create</button>" in body and 'value="' + "n" * 24 + '"' in body  # same dialog, same nonce: retry
    assert not fake.service.created and link_of(app, "company", crm["beta"], conn) is None
    with app.app_context():
        assert db.session.get(Company, crm["beta"]).email == "beta@example.com"


def test_create_is_hidden_and_refused_without_the_right_to_create(app, admin_client, user_client, connector_id, crm,
                                                                  fake):
    cid = configure(app, admin_client, connector_id, "No creates", all_can_create="")
    with app.app_context():
        assert db.session.get(Connection, cid).all_can_create is False
    results = text(user_client.get(url("company", crm["beta"], cid, "/connect/Customer/search"),
                                   query_string={"q": ""}, htmx=True))
    assert "create in ERP" not in results
    assert open_create(user_client, "company", crm["beta"], cid).status_code == 403
    response = create(user_client, app, "company", crm["beta"], cid, {"creditlimit": "1"})
    assert response.status_code == 403 and "may not create records in the ERP" in toasts(response)[0]["message"]
    assert not fake.calls_to("CreateActor")


def test_connect_buttons_are_hidden_and_refused_without_the_right_to_connect(app, admin_client, user_client,
                                                                           connector_id, crm, users, fake,
                                                                           acme_key, conn):
    with app.app_context():
        connection = db.session.get(Connection, conn)
        connection.all_access = False
        connection.access.append(ConnectionAccess(user_id=users["bob"], can_connect=False, can_create=False))
        db.session.commit()
    html = text(user_client.get(url("company", crm["acme"]), htmx=True))
    assert "Fake production: not connected" in html and "Connect to:" not in html
    assert "may not connect records" in html
    for tail in ("/connect/Customer", f"/connect/Customer/compare?erp_key={acme_key}",
                 "/connect/Customer/search?q=x"):
        assert user_client.get(url("company", crm["acme"], conn, tail), htmx=True).status_code == 403, tail
    refused = user_client.post(url("company", crm["acme"], conn, "/connect/Customer"),
                               data={"erp_key": acme_key}, htmx=True)
    assert refused.status_code == 403
    assert user_client.post(url("company", crm["acme"], conn, "/disconnect"), htmx=True).status_code == 403
    assert not fake.calls_to("SaveActors")


# -------------------------------------------------------------------------------------------- contacts


def test_contacts_connect_only_under_a_linked_company(app, user_client, conn, crm, acme_key, fake):
    refused = user_client.get(url("contact", crm["ola"], conn, "/connect/Person"), htmx=True)
    assert refused.status_code == 409 and "Connect the company Acme AS" in toasts(refused)[0]["message"]
    assert create(user_client, app, "contact", crm["ola"], conn, actor_type="Person").status_code == 409
    loner = text(user_client.get(url("contact", crm["loner"]), htmx=True))
    assert "This contact has no company" in loner
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    html = text(user_client.get(url("contact", crm["ola"]), htmx=True))
    assert ">Person</button>" in html
    mine = fake.add_actor("Person", {"firstname": "Ola", "lastname": "Nordmann", "email": "ola@acme.example"},
                          parent=("Customer", acme_key))
    stranger = fake.add_actor("Customer", {"name": "Stranger AS"})
    theirs = fake.add_actor("Person", {"firstname": "Ola", "lastname": "Nordmann"}, parent=("Customer", stranger))
    dialog = text(user_client.get(url("contact", crm["ola"], conn, "/connect/Person"), htmx=True))
    assert f"under Customer {acme_key}" in dialog and 'value="Ola Nordmann"' in dialog
    results = text(user_client.get(url("contact", crm["ola"], conn, "/connect/Person/search"),
                                   query_string={"q": "Ola"}, htmx=True))
    call = fake.calls_to("SearchActorByParent")[-1]
    assert (call["ParentActorType"], call["ParentErpKey"], call["SearchText"]) == ("Customer", acme_key, "Ola")
    assert mine in results and theirs not in results
    wrong = user_client.get(url("contact", crm["ola"], conn, "/connect/Person/compare"),
                            query_string={"erp_key": theirs}, htmx=True)
    assert f"Person {theirs} is not under Customer {acme_key}" in text(wrong)
    response = connect(user_client, app, "contact", crm["ola"], conn, mine, {}, actor_type="Person")
    assert response.status_code == 200, text(response)
    link = link_of(app, "contact", crm["ola"], conn)
    assert link.erp_key == mine and link.parent_erp_key == acme_key


def test_a_created_person_carries_its_parent(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    response = create(user_client, app, "contact", crm["ola"], conn, actor_type="Person")
    assert response.status_code == 200, text(response)
    actor = fake.calls_to("CreateActor")[-1]["Actor"]
    assert (actor["ParentActorType"], actor["ParentErpKey"]) == ("Customer", acme_key)
    assert actor["FieldValues"] == {"firstname": "Ola", "lastname": "Nordmann", "email": "ola@acme.example"}
    created = fake.service.created[-1]
    assert created["ParentErpKey"] == acme_key
    assert link_of(app, "contact", crm["ola"], conn).parent_erp_key == acme_key


def test_advanced_search_of_contacts_stays_under_the_company(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    with app.app_context():
        config = db.session.get(Connection, conn).actor_type("Person")
        last_id = next(f.id for f in config.fields if f.field_key == "lastname")
    user_client.get(url("contact", crm["ola"], conn, "/connect/Person/advanced/search"),
                    query_string={f"use_{last_id}": "1", f"op_{last_id}": "=", f"v_{last_id}": "Nordmann"},
                    htmx=True)
    restrictions = fake.calls_to("SearchActorsAdvanced")[-1]["Restrictions"]
    assert {"FieldKey": "ParentErpKey", "Operator": "=", "Values": [acme_key]} in restrictions
    assert {"FieldKey": "lastname", "Operator": "=", "Values": ["Nordmann"]} in restrictions


# -------------------------------------------------------------------------------------------- disconnect


def test_disconnect_deletes_only_the_link_and_never_calls_the_connector(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    section = text(user_client.get(url("company", crm["acme"], conn), htmx=True))
    assert "hx-confirm=" in section and "nothing is changed in the ERP" in section
    before = fake.get_actor("Customer", acme_key)
    calls = len(fake.calls)
    response = user_client.post(url("company", crm["acme"], conn, "/disconnect"), htmx=True)
    assert response.status_code == 200
    assert "Fake production: not connected" in text(response) and "Connect to:" in text(response)
    assert "Nothing was changed in the ERP" in toasts(response)[0]["message"]
    assert len(fake.calls) == calls and fake.get_actor("Customer", acme_key) == before
    assert link_of(app, "company", crm["acme"], conn) is None
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "erp.disconnect")) is not None
        assert db.session.get(Company, crm["acme"]) is not None
    again = user_client.post(url("company", crm["acme"], conn, "/disconnect"), htmx=True)
    assert again.status_code == 200 and "not connected" in toasts(again)[0]["message"]


# -------------------------------------------------------------------------------------------- sync now


def test_sync_now_reports_nothing_to_do_when_both_sides_agree(app, user_client, conn, crm, acme_key):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    response = user_client.post(url("company", crm["acme"], conn, "/sync"), htmx=True)
    assert response.status_code == 200, text(response)
    assert "Nothing to sync: both sides already agree." in text(response)
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "erp.sync_now")) is not None


def test_sync_now_shows_what_changed_on_each_side(app, user_client, conn, crm, acme_key, fake):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    with app.app_context():
        db.session.get(Company, crm["acme"]).phone = "+47 11 11 11 11"
        db.session.commit()
    fake.update_actor("Customer", acme_key, {"email": "new@acme.example"})
    response = user_client.post(url("company", crm["acme"], conn, "/sync"), htmx=True)
    body = text(response)
    assert response.status_code == 200, body
    assert "Sent to ERP:" in body and "+47 11 11 11 11" in body
    assert "Taken from ERP:" in body and "new@acme.example" in body
    assert fake.get_actor("Customer", acme_key)["FieldValues"]["phone"] == "+47 11 11 11 11"
    with app.app_context():
        assert db.session.get(Company, crm["acme"]).email == "new@acme.example"


def test_sync_now_while_another_run_is_active_says_so(app, user_client, conn, crm, acme_key):
    connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
            {"creditlimit": "1"})
    with app.app_context():
        db.session.add(SyncRun(connection_id=conn, status="running"))
        db.session.commit()
    response = user_client.post(url("company", crm["acme"], conn, "/sync"), htmx=True)
    assert response.status_code == 409 and toasts(response)[0]["level"] == "error"


def test_sync_now_is_refused_outside_the_scope_and_for_unlinked_records(app, admin_client, user_client,
                                                                        connector_id, crm, users, conn):
    restricted = configure(app, admin_client, connector_id, "Finance only", scope="specific",
                           **{f"scope_user_{users['alice']}": "create"})
    assert user_client.post(url("company", crm["acme"], restricted, "/sync"), htmx=True).status_code == 403
    unlinked = user_client.post(url("company", crm["acme"], conn, "/sync"), htmx=True)
    assert unlinked.status_code == 409 and "not connected" in toasts(unlinked)[0]["message"]


# -------------------------------------------------------------------------------------------- csrf


def test_mutations_need_the_csrf_token(app_config):
    from cryptography.fernet import Fernet

    from portal import create_app
    from tests.conftest import csrf_token_from, make_user
    from tests.htmx_client import HtmxClient

    config = {**app_config, "WTF_CSRF_ENABLED": True, "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    application = create_app(config, environ={})
    application.test_client_class = HtmxClient
    with application.app_context():
        db.create_all()
        user = make_user("dan@example.com", licence=True)
        company = Company(name="Csrf AS")
        db.session.add(company)
        db.session.commit()
        user_id, company_id = user.id, company.id
    client = application.test_client()
    with client.session_transaction() as session:
        session["user_id"] = user_id
    token = csrf_token_from(text(client.get("/")))
    refused = client.post(f"/erp/company/{company_id}/connections/1/disconnect", htmx=True)
    assert refused.status_code == 400
    allowed = client.post(f"/erp/company/{company_id}/connections/1/disconnect", htmx=True,
                          headers={"X-CSRFToken": token})
    assert allowed.status_code == 404  # past the CSRF check: there is no such connection
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
