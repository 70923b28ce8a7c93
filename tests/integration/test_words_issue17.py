"""Issue #17, "The screens as people use them": the words the screens show — labels and list item names instead of
stored keys, a broken link said once, a run's conflict counted as a change, a readable audit log, and why a user
gets no Create button. (The mapping reasons are unit-tested in tests/unit/test_values.py; the ERP tab in a
browser in tests/e2e/test_words.py.)"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Company, Connection, CrmList, ListItemMapping
from portal.services import audit
from portal.services.sync import engine
from tests import sync_support as s
from tests.integration import test_erp_tab as tab
from tests.integration.test_erp_tab import (  # noqa: F401 (fixtures)
    acme_key,
    conn,
    connector_id,
    crm,
)

# ERP item names that differ from the CRM's, so a screen shows which one it used
ERP_NAMES = {"NO": "Norge", "SE": "Sverige", "DK": "Danmark"}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _rename_erp_items(connection_id: int, actor_type: str = "Customer") -> None:
    config = db.session.get(Connection, connection_id).actor_type(actor_type)
    country = next(f for f in config.fields if f.field_key == "country")
    for mapping in country.list_mappings:
        mapping.erp_item_text = ERP_NAMES.get(mapping.erp_item_key, mapping.erp_item_text)
    db.session.commit()


def html(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


# ------------------------------------------------------------------------- 3. change log: labels, not keys


def test_change_log_shows_field_labels_and_list_item_names(ctx, fake, admin_client):
    cid = s.make_connection(fake)
    _rename_erp_items(cid)
    company_id, _key, _ = s.link_company(fake, cid, name="Acme AS", country_id=s.country_id("Norway"), vat_no="1")
    s.edit_company(company_id, country_id=s.country_id("Sweden"), vat_no="NO 2")
    outcome = s.run(cid)
    body = html(admin_client.get(f"/settings/sync/runs/{outcome.run_id}"))
    rows = {" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in re.findall(r"<tr class=.*?</tr>", body, re.S)}
    # the CRM field's label, the ERP field's name beside it, and the ERP's item names (not "NO" → "SE")
    assert any("Customer C1001 Country CRM → ERP Norge Sverige" in row for row in rows), rows
    assert any("VAT/org. number ERP Organisation number CRM → ERP 1 NO 2" in row for row in rows), rows
    assert ">country_id<" not in body and ">vat_no<" not in body and "<td>SE</td>" not in body


def test_a_list_conflict_names_both_values_as_the_crm_and_the_erp_call_them(ctx, fake, admin_client):
    cid = s.make_connection(fake, policy="erp")
    _rename_erp_items(cid)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", country_id=s.country_id("Norway"))
    s.edit_company(company_id, country_id=s.country_id("Sweden"))
    fake.update_actor("Customer", key, {"country": "DK"})
    outcome = s.run(cid)
    body = html(admin_client.get(f"/settings/sync/runs/{outcome.run_id}"))
    # written to the CRM: CRM names; the CRM's losing value (kept by the engine in ERP form, "SE") as the CRM item
    assert "ERP “Denmark” beat CRM “Sweden”" in body
    assert "“SE”" not in body


def test_the_erp_tab_names_the_last_conflicts_with_labels(app, user_client, conn, crm, acme_key, fake):  # noqa: F811
    tab.connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                {"creditlimit": "1"})
    with app.app_context():
        country = next(f for f in db.session.get(Connection, conn).actor_type("Customer").fields
                       if f.field_key == "country")
        country.list_mappings.append(ListItemMapping(erp_item_key="DK", erp_item_text="Denmark",
                                                     crm_item_id=tab.list_id(CrmList.COUNTRY, "Denmark")))
        db.session.commit()
        _rename_erp_items(conn)
        db.session.get(Company, crm["acme"]).country_id = tab.list_id(CrmList.COUNTRY, "Sweden")
        db.session.commit()
    fake.update_actor("Customer", acme_key, {"country": "DK"})  # both changed Norway: a conflict, the CRM wins
    synced = html(user_client.post(tab.url("company", crm["acme"], conn, "/sync"), htmx=True))
    result = synced[synced.index("erp-sync-result"):]
    result = result[:result.index("</div>")]
    assert "Country: “Danmark” → “Sverige”" in result  # Sent to ERP, in the ERP's names
    assert "Country: CRM had “Sweden”, ERP had “Danmark”" in result  # each side's value as that side names it
    assert "“SE”" not in result and "“DK”" not in result
    section = html(user_client.get(tab.url("company", crm["acme"], conn), htmx=True))
    conflicts = section[section.index("erp-conflicts"):]
    conflicts = conflicts[:conflicts.index("</div>")]
    assert "Country: kept “Sverige”, overwrote “Danmark”" in conflicts  # the ERP's names (it was written there)
    assert "“SE”" not in conflicts and "“DK”" not in conflicts


# ------------------------------------------------------------------------ 3. Create dialog: item names


def test_create_dialog_shows_list_item_names_not_keys(app, user_client, conn, crm, fake):  # noqa: F811
    with app.app_context():
        _rename_erp_items(conn)
        loner = Company(name="Nordic Fjord AS")  # no country: the admin's default (DK, not list-mapped) is sent
        db.session.add(loner)
        country = next(f for f in db.session.get(Connection, conn).actor_type("Customer").fields
                       if f.field_key == "country")
        country.has_default, country.default_value = True, "DK"
        db.session.commit()
        loner_id = loner.id
    mapped = html(tab.open_create(user_client, "company", crm["acme"], conn))  # Norway, through the list mapping
    assert "<dt>Country</dt><dd>Norge</dd>" in mapped and "<dd>NO</dd>" not in mapped
    proof = tab.search_proof(user_client, "company", loner_id, conn)  # Create comes after a search
    fake.requests.clear()
    default = html(tab.open_create(user_client, "company", loner_id, conn, proof=proof))  # named by the connector
    assert "<dt>Country</dt><dd>Denmark</dd>" in default and "<dd>DK</dd>" not in default
    assert [method for method, _body in fake.calls] == ["GetListItems"]


def test_create_dialog_shows_the_key_when_the_connector_cannot_name_it(app, user_client, conn, fake):  # noqa: F811
    with app.app_context():
        loner = Company(name="Nordic Fjord AS")
        db.session.add(loner)
        country = next(f for f in db.session.get(Connection, conn).actor_type("Customer").fields
                       if f.field_key == "country")
        country.has_default, country.default_value = True, "DK"
        db.session.commit()
        loner_id = loner.id
    proof = tab.search_proof(user_client, "company", loner_id, conn)  # Create comes after a search
    fake.reply_error("GetListItems", "The ERP's lists are offline.", times=3)
    body = html(tab.open_create(user_client, "company", loner_id, conn, proof=proof))
    assert "<dt>Country</dt><dd>DK</dd>" in body  # the dialog still opens


# ------------------------------------------------------------------------ 4. a settled conflict is a change


@pytest.mark.parametrize("policy", ["crm", "erp"])
def test_a_run_that_settles_a_conflict_counts_the_record_as_changed(ctx, fake, admin_client, policy):
    cid = s.make_connection(fake, policy=policy)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="100")
    unchanged_id, _k, _l = s.link_company(fake, cid, name="Beta AS", phone="1")
    s.edit_company(company_id, phone="200")
    fake.update_actor("Customer", key, {"phone": "300"})
    outcome = s.run(cid)
    assert outcome.counts["conflicts"] == 1 and outcome.counts["changed"] == 1
    body = html(admin_client.get(f"/settings/sync/runs/{outcome.run_id}"))
    assert "1 changed (settled conflicts included)" in body
    # Sync now of one record (picked up from neither feed) says the same
    s.edit_company(company_id, phone="400")
    fake.update_actor("Customer", key, {"phone": "500"})
    result = engine.sync_record(link_id)
    run = s.get_run(result.run_id)
    assert run.counts["conflicts"] == 1 and run.counts["changed"] == 1
    body = html(admin_client.get(f"/settings/sync/runs/{result.run_id}"))
    assert "Records checked</dt><dd>1: 1 changed (settled conflicts included), 0 with nothing to write" in body
    assert "Picked up from" not in body  # a Sync now is not picked up from either side's changes


def test_a_run_that_changes_nothing_says_so(ctx, fake, admin_client):
    cid = s.make_connection(fake)
    company_id, _key, link_id = s.link_company(fake, cid, name="Acme AS", phone="100")
    result = engine.sync_record(link_id)
    assert s.get_run(result.run_id).counts["changed"] == 0
    body = html(admin_client.get(f"/settings/sync/runs/{result.run_id}"))
    assert "1: 0 changed, 1 with nothing to write" in body


# --------------------------------------------------------------------------------- 5. a readable audit log


def test_audit_diff_lines():
    lines = audit.diff({"name": "Old", "scope": ["alice", "bob"], "on": False, "note": None},
                       {"name": "Ny • AS", "scope": ["alice"], "on": True, "note": "x"})
    by_key = {line.key: line for line in lines}
    assert (by_key["name"].before.text, by_key["name"].after.text) == ("Old", "Ny • AS")
    assert by_key["scope"].before.items == ("alice", "bob") and by_key["scope"].after.items == ("alice",)
    assert (by_key["on"].before.text, by_key["on"].after.text) == ("no", "yes")
    assert by_key["note"].before.muted and by_key["note"].before.text == "blank"
    created = audit.diff(None, {"name": "A", "config": {"Company": "ACME", "ApiKey": "••••••••"}})
    assert created[0].before is None and created[1].after.items == ("Company: ACME", "ApiKey: ••••••••")
    assert audit.diff(None, None) == []


def test_the_audit_log_shows_a_readable_escaped_diff(app, admin_client):
    with app.app_context():
        audit.record("connection.update", object_type="connection", object_id=7, object_repr="Demo ERP",
                     before={"name": "Demo", "users": ["alice", "bob"], "password": "old"},
                     after={"name": "Demo • <b>ERP</b>", "users": ["alice"], "password": "new"}, actor="test")
        db.session.commit()
    body = html(admin_client.get("/settings/audit"))
    assert "\\u2022" not in body and "tojson" not in body
    assert "<strong>name</strong>: Demo → Demo • &lt;b&gt;ERP&lt;/b&gt;" in body  # unicode as is, markup escaped
    assert '<ul class="audit-items"><li>alice</li><li>bob</li></ul> → <ul class="audit-items"><li>alice</li></ul>' \
        in body
    assert "<strong>password</strong>: •••••••• → ••••••••" in body  # still masked


def test_audit_entries_of_a_creation_show_the_values_only(app, admin_client):
    with app.app_context():
        audit.record("list_item.create", object_type="list_item", object_repr="Countries: Ísland",
                     after={"list": "Countries", "name": "Ísland", "deleted": False}, actor="test")
        db.session.commit()
        assert db.session.scalar(select(AuditEvent.before).where(AuditEvent.action == "list_item.create")) is None
    body = html(admin_client.get("/settings/audit"))
    assert "<strong>name</strong>: Ísland</li>" in body and "<strong>deleted</strong>: no</li>" in body


# ------------------------------------------------------------------------ 6. why there is no Create


def test_a_user_who_may_only_connect_is_told_why_there_is_no_create(app, user_client, conn, crm):  # noqa: F811
    section = html(user_client.get(tab.url("company", crm["beta"], conn), htmx=True))
    assert "erp-no-create" not in section  # everyone may create here
    with app.app_context():
        db.session.get(Connection, conn).all_can_create = False
        db.session.commit()
    section = html(user_client.get(tab.url("company", crm["beta"], conn), htmx=True))
    assert ("You may connect records to Fake production but not create new Customer or Supplier records in it; "
            "ask an administrator if one is missing.") in section
    assert ">Customer</button>" in section  # connecting is still offered


# ----------------------------------------------------------------------------------- 2. a broken link


def test_a_broken_link_says_so_in_its_heading_and_once_below(app, user_client, conn, crm, acme_key, fake):  # noqa: F811
    tab.connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                {"creditlimit": "1"})
    fake.delete_actor("Customer", acme_key)
    with app.app_context():
        link = tab.link_of(app, "company", crm["acme"], conn)
        engine.sync_record(link.id)  # the engine finds it gone and marks the link broken
    section = html(user_client.get(tab.url("company", crm["acme"], conn), htmx=True))
    assert f"<h3 id=\"erp-conn-{conn}-title\">Fake production: link broken — Customer {acme_key}</h3>" in section
    assert "connected Customer" not in section
    assert section.count("no longer has") == 1
    values = html(user_client.get(tab.url("company", crm["acme"], conn, "/values"), htmx=True))
    assert "no longer has" not in values


def test_an_actor_back_in_the_erp_shows_the_section_connected_again(app, user_client, conn, crm, acme_key,  # noqa: F811
                                                                   fake):
    tab.connect(user_client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                {"creditlimit": "1"})
    stored = fake.get_actor("Customer", acme_key)
    fake.delete_actor("Customer", acme_key)
    user_client.get(tab.url("company", crm["acme"], conn, "/values"), htmx=True)
    fake.add_actor("Customer", stored["FieldValues"], erp_key=acme_key, last_modified=stored["LastModified"])
    values = html(user_client.get(tab.url("company", crm["acme"], conn, "/values"), htmx=True))
    assert f'hx-get="/erp/company/{crm["acme"]}/connections/{conn}"' in values  # the section, anew
    section = html(user_client.get(tab.url("company", crm["acme"], conn), htmx=True))
    assert f"Fake production: connected Customer {acme_key}" in section and "no longer has" not in section
