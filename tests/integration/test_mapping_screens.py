"""Mappings, List mapping, Defaults and Rank fields screens against a FakeConnector: each change is an htmx
POST answered with the single row (or the rank table), 422 with the reason on the row when refused."""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Connection, CrmList, ListItem
from tests.fakes import connector_app
from tests.integration import helpers_mapping
from tests.integration.helpers_mapping import audit_actions, define_connection, erp_field, field_id

# the shared fixtures (a FakeConnector per module, reset per test; its connector row)
connector = helpers_mapping.connector


@pytest.fixture
def cid(app, admin_client, connector):
    return define_connection(admin_client, connector)


def base(cid: int) -> str:
    return f"/settings/connections/{cid}"


def row_url(cid: int, fid: int) -> str:
    return f"{base(cid)}/mappings/fields/{fid}"


def post_row(client, cid, fid, **data):
    defaults = {"crm_field": "", "to_crm": "0", "to_erp": "0"}
    return client.post(row_url(cid, fid), data={**defaults, **data}, htmx=True)


def html(response) -> str:
    return response.get_data(as_text=True)


def text(response) -> str:
    """The body with character references resolved (for messages that hold quotes)."""
    return htmllib.unescape(html(response))


def triggers(response) -> dict:
    return json.loads(response.headers.get("HX-Trigger", "{}"))


def assert_single_row(response, dom_id: str) -> str:
    body = html(response)
    assert "<html" not in body
    assert body.lstrip().startswith(f'<tr id="{dom_id}"'), body[:200]
    assert body.count("<tr") == 1
    return body


def country_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(ListItem.id).where(ListItem.list_name == CrmList.COUNTRY,
                                                           ListItem.name == name))


# ============================================================================== mappings

def test_mappings_page_has_a_tab_per_actor_type_a_switch_and_the_grid(admin_client, cid):
    page = html(admin_client.get(f"{base(cid)}/mappings"))
    for actor_type in ("Customer", "Supplier", "Person", "Project"):
        assert f'id="tab-{actor_type}"' in page
    assert "Sync ERP &#34;Customer&#34; to CRM &#34;Company&#34;" in page
    for column in ("Show in search", "ERP field", "Direction", "CRM field (Company)", "Show in ERP tab"):
        assert f'<th scope="col">{column}</th>' in page
    assert 'aria-label="Sync Name to the CRM"' in page and 'aria-label="Sync Name to the ERP"' in page
    person = html(admin_client.get(f"{base(cid)}/mappings?actor=Person"))
    assert "Sync ERP &#34;Person&#34; to CRM &#34;Contact&#34;" in person and "CRM field (Contact)" in person


def test_sync_tab_links_to_the_four_screens(admin_client, cid):
    page = html(admin_client.get(f"/settings/sync?connection={cid}"))
    for path in ("mappings", "list-mapping", "defaults", "rank"):
        assert f'href="{base(cid)}/{path}"' in page


def test_pressing_a_direction_saves_only_that_row(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "name")
    response = post_row(admin_client, cid, fid, crm_field="name", set_to_crm="1")
    assert response.status_code == 200
    body = assert_single_row(response, f"mapping-{fid}")
    assert re.search(r'id="mapping-\d+-to_crm" class="dir dir-on"\s+aria-pressed="true"', body)
    events = triggers(response)
    assert "mapping-changed" in events and events["toast"][0]["level"] == "success"
    response = post_row(admin_client, cid, fid, crm_field="name", to_crm="1", set_to_erp="1")
    assert response.status_code == 200
    with app.app_context():
        name = erp_field(cid, "Customer", "name")
        assert (name.crm_field, name.sync_to_crm, name.sync_to_erp) == ("name", True, True)
    assert audit_actions(app).count("mapping.update") == 2


def test_checkboxes_and_crm_choice_save_the_row(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "orgnr")
    response = post_row(admin_client, cid, fid, crm_field="vat_no", show_in_search="1", show_in_gui="1")
    assert response.status_code == 200
    body = assert_single_row(response, f"mapping-{fid}")
    assert '<option value="vat_no" selected>' in body
    with app.app_context():
        orgnr = erp_field(cid, "Customer", "orgnr")
        assert (orgnr.crm_field, orgnr.show_in_search, orgnr.show_in_gui) == ("vat_no", True, True)


@pytest.mark.parametrize("actor_type, key, crm_key, message", [
    ("Person", "firstname", "birth_date",
     "Birth date is a date field in the CRM; an ERP Text field can only be mapped to a CRM text or long text field"),
    ("Customer", "active", "country_id", "Country is a list in the CRM; an ERP Checkbox field can only be mapped to a CRM checkbox"),
    ("Customer", "orgnr", "no_such_field", "Unknown CRM field “no_such_field”"),
    ("Customer", "founded", "name",
     "Name is a text field in the CRM; an ERP Date field can only be mapped to a CRM date field"),
])
def test_bad_mapping_is_refused_with_422_and_the_message_on_its_row(app, admin_client, cid, actor_type, key,
                                                                   crm_key, message):
    fid = field_id(app, cid, actor_type, key)
    response = post_row(admin_client, cid, fid, crm_field=crm_key, set_to_crm="1")
    assert response.status_code == 422
    body = assert_single_row(response, f"mapping-{fid}")
    assert message in body and 'role="alert"' in body and 'aria-invalid="true"' in body
    with app.app_context():
        unchanged = erp_field(cid, actor_type, key)
        assert not unchanged.sync_to_crm and unchanged.crm_field != crm_key
    assert "mapping.update" not in audit_actions(app)


def test_disabled_choices_and_directions_say_why(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "active")  # a Checkbox: only the CRM checkbox fits
    body = html(admin_client.get(row_url(cid, fid), htmx=True))
    assert 'disabled title="Country is a list in the CRM; an ERP Checkbox field can only be mapped to a CRM checkbox"' in body
    assert re.search(r'aria-label="Sync Active to the CRM"\s+disabled aria-describedby="mapping-\d+-to_crm-why"', body)
    assert "Not possible: no CRM field is chosen." in body


def test_already_mapped_by_another_connection_names_it_and_blocks_to_crm(app, admin_client, connector, cid):
    email = field_id(app, cid, "Customer", "email")
    assert post_row(admin_client, cid, email, crm_field="email", set_to_crm="1").status_code == 200
    second = define_connection(admin_client, connector, name="Fake archive")
    other_email = field_id(app, second, "Customer", "email")
    body = html(admin_client.get(row_url(second, other_email), htmx=True))
    assert "already mapped" in body and "connection Fake production" in body
    assert "CRM field E-mail is already the to-CRM target of connection Fake production" in body
    refused = post_row(admin_client, second, other_email, crm_field="email", set_to_crm="1")
    assert refused.status_code == 422 and "already the to-CRM target of connection Fake production" in html(refused)
    assert post_row(admin_client, second, other_email, crm_field="email", set_to_erp="1").status_code == 200


def test_refresh_flags_vanished_fields_and_unmap_clears_them(app, admin_client, cid, monkeypatch):
    phone = field_id(app, cid, "Customer", "phone")
    assert post_row(admin_client, cid, phone, crm_field="phone", set_to_crm="1").status_code == 200
    monkeypatch.setitem(connector_app.FIELDS, "Customer",
                        [f for f in connector_app.FIELDS["Customer"] if f["FieldKey"] != "phone"])
    refreshed = admin_client.post(f"{base(cid)}/mappings/refresh", data={"actor": "Customer"}, htmx=True)
    assert refreshed.headers["HX-Redirect"] == f"{base(cid)}/mappings?actor=Customer"
    page = html(admin_client.get(refreshed.headers["HX-Redirect"]))
    assert "1 missing in ERP: Customer.phone" in page  # the flash message
    row = html(admin_client.get(row_url(cid, phone), htmx=True))
    assert "missing in ERP" in row and "Unmap it before activating." in row
    with app.app_context():
        assert erp_field(cid, "Customer", "phone").crm_field == "phone"  # the mapping is kept until unmapped
    unmapped = admin_client.post(f"{row_url(cid, phone)}/unmap", htmx=True)
    assert unmapped.status_code == 200
    body = assert_single_row(unmapped, f"mapping-{phone}")
    assert "Unmap it before activating." not in body
    with app.app_context():
        assert erp_field(cid, "Customer", "phone").crm_field is None


def test_missing_in_crm_is_flagged_with_an_unmap_button(app, admin_client, cid):
    with app.app_context():
        erp_field(cid, "Customer", "crmref").crm_field = "shoe_size"
        db.session.commit()
    fid = field_id(app, cid, "Customer", "crmref")
    body = html(admin_client.get(row_url(cid, fid), htmx=True))
    assert "missing in CRM" in body and "Unmap" in body
    assert admin_client.post(f"{row_url(cid, fid)}/unmap", htmx=True).status_code == 200


def test_the_switch_turns_an_actor_type_on_and_off(app, admin_client, cid):
    response = admin_client.post(f"{base(cid)}/mappings/Customer/switch", data={"on": "1"}, htmx=True)
    assert response.status_code == 200 and 'id="actor-switch"' in html(response) and "checked" in html(response)
    assert "mapping-changed" in triggers(response)
    with app.app_context():
        assert db.session.get(Connection, cid).actor_type("Customer").is_active
    response = admin_client.post(f"{base(cid)}/mappings/Customer/switch", data={}, htmx=True)
    with app.app_context():
        assert not db.session.get(Connection, cid).actor_type("Customer").is_active
    assert audit_actions(app).count("mapping.actor_type") == 2


def test_activation_is_refused_with_every_reason_then_allowed(app, admin_client, cid):
    admin_client.post(f"{base(cid)}/mappings/Customer/switch", data={"on": "1"}, htmx=True)
    refused = admin_client.post(f"{base(cid)}/mappings/activation", data={"active": "1"}, htmx=True)
    assert refused.status_code == 422
    body = html(refused)
    assert "Fake production cannot be activated:" in body
    assert "Customer: “Name” is Mandatory in the ERP but has neither a direction to the ERP nor a default value." \
        in body
    name = field_id(app, cid, "Customer", "name")
    post_row(admin_client, cid, name, crm_field="name", set_to_erp="1")
    status = html(admin_client.get(f"{base(cid)}/mappings/status", htmx=True))
    assert "Nothing stops this connection from being activated." in status
    activated = admin_client.post(f"{base(cid)}/mappings/activation", data={"active": "1"}, htmx=True)
    assert activated.status_code == 200 and "badge-active" in html(activated)
    # while active, a change that would make it invalid is refused on its row
    refused_row = post_row(admin_client, cid, name, crm_field="name", to_erp="1", set_to_erp="0")
    assert refused_row.status_code == 422 and "The connection is active" in html(refused_row)
    deactivated = admin_client.post(f"{base(cid)}/mappings/activation", data={"active": "0"}, htmx=True)
    assert deactivated.status_code == 200
    with app.app_context():
        assert db.session.get(Connection, cid).active is False


def test_rows_of_another_connection_are_not_found(app, admin_client, connector, cid):
    second = define_connection(admin_client, connector, name="Fake archive")
    fid = field_id(app, second, "Customer", "email")
    assert admin_client.get(row_url(cid, fid), htmx=True).status_code == 404
    assert admin_client.get(f"{base(999)}/mappings").status_code == 404


def test_plain_users_cannot_reach_the_mapping_screens(app, user_client, cid):
    fid = field_id(app, cid, "Customer", "email")
    for url in (f"{base(cid)}/mappings", f"{base(cid)}/list-mapping", f"{base(cid)}/defaults", f"{base(cid)}/rank"):
        assert user_client.get(url).status_code == 403
    assert user_client.post(row_url(cid, fid), data={"crm_field": "email", "set_to_crm": "1"},
                            htmx=True).status_code == 403


def test_without_htmx_a_row_post_redirects_back_with_a_message(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "email")
    response = admin_client.post(row_url(cid, fid), data={"crm_field": "email", "set_to_crm": "1"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/mappings?actor=Customer")
    assert "Mapping of E-mail saved." in html(admin_client.get(response.headers["Location"]))


# ============================================================================== list mapping

def list_url(cid: int, fid: int) -> str:
    return f"{base(cid)}/list-mapping/{fid}/item"


def test_list_mapping_shows_erp_items_from_getlist_against_crm_items(app, admin_client, cid, fake):
    fid = field_id(app, cid, "Customer", "country")
    page = html(admin_client.get(f"{base(cid)}/list-mapping?field={fid}"))
    assert "ERP list Countries → CRM Country" in page
    for text in ("Norway", "Sweden", "Denmark", "Finland", "Germany"):
        assert f'aria-label="CRM item for {text}"' in page
    assert "(No selection)" in page
    assert fake.calls_to("GetList")[-1]["ListName"] == "Countries"


def test_list_item_change_answers_with_its_row_and_duplicates_out_of_band(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "country")
    norway = country_id(app, "Norway")
    first = admin_client.post(list_url(cid, fid), data={"erp_key": "NO", "crm_item_id": str(norway)}, htmx=True)
    assert first.status_code == 200 and "<html" not in html(first)
    assert html(first).lstrip().startswith("<tr id=\"list-item-") and "hx-swap-oob" not in html(first)
    second = admin_client.post(list_url(cid, fid), data={"erp_key": "SE", "crm_item_id": str(norway)}, htmx=True)
    body = html(second)
    assert second.status_code == 200
    assert "Duplicate: Norway also maps to Norway." in body  # this row
    assert body.count('hx-swap-oob="true"') == 1 and "Duplicate: Sweden also maps to Norway." in body  # NO's row
    assert triggers(second)["toast"][0]["level"] == "warning"
    with app.app_context():
        assert {m.erp_item_key: m.crm_item_id for m in erp_field(cid, "Customer", "country").list_mappings} == {
            "NO": norway, "SE": norway}
    cleared = admin_client.post(list_url(cid, fid), data={"erp_key": "SE", "crm_item_id": ""}, htmx=True)
    assert cleared.status_code == 200 and "Duplicate" not in html(cleared).split("<template>")[0]
    assert audit_actions(app).count("list_mapping.update") == 3


def test_list_item_the_erp_no_longer_has_is_refused_on_its_row(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "country")
    response = admin_client.post(list_url(cid, fid), data={"erp_key": "XX", "crm_item_id": str(country_id(app,
                                                                                                       "Norway"))},
                                 htmx=True)
    assert response.status_code == 422
    assert "ERP item “XX” no longer exists in the ERP list Countries" in html(response)
    with app.app_context():
        assert erp_field(cid, "Customer", "country").list_mappings == []


def test_match_by_name_maps_equal_texts(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "country")
    response = admin_client.post(f"{base(cid)}/list-mapping/{fid}/match", htmx=True)
    assert response.headers["HX-Redirect"].endswith(f"list-mapping?field={fid}")
    with app.app_context():
        assert len(erp_field(cid, "Customer", "country").list_mappings) == 5


def test_no_lists_until_a_list_field_is_mapped(app, admin_client, cid):
    with app.app_context():
        connection = db.session.get(Connection, cid)
        for config in connection.actor_types:
            for f in config.fields:
                if f.field_type == "List":
                    f.crm_field = None
        db.session.commit()
    assert "No lists: map an ERP list field" in html(admin_client.get(f"{base(cid)}/list-mapping"))


# ============================================================================== defaults

def defaults_url(cid: int) -> str:
    return f"{base(cid)}/defaults"


def test_defaults_page_lists_connector_mandatory_fields_locked_on(app, admin_client, cid):
    page = html(admin_client.get(f"{defaults_url(cid)}?actor=Customer"))
    assert "Required by the ERP: set a default value, Ask user" in page
    fid = field_id(app, cid, "Customer", "name")
    editor = html(admin_client.get(f"{defaults_url(cid)}/{fid}/edit", htmx=True))
    assert re.search(r'name="mandatory" value="1" form="default-form-\d+"\s*checked disabled', editor)


@pytest.mark.parametrize("key, marker", [
    ("employees", 'inputmode="numeric"'),
    ("creditlimit", 'inputmode="decimal"'),
    ("founded", 'type="date"'),
    ("active", 'type="checkbox" id="default-form-'),
    ("country", '<option value="SE">Sweden</option>'),
    ("orgnr", 'maxlength="20"'),
])
def test_add_editor_has_a_type_appropriate_input(app, admin_client, cid, key, marker):
    fid = field_id(app, cid, "Customer", key)
    response = admin_client.get(f"{defaults_url(cid)}/new?field_id={fid}", htmx=True)
    body = html(response)
    assert response.status_code == 200 and body.lstrip().startswith('<tr id="default-add"')
    assert marker in body


def test_adding_a_list_default_with_ask_user_answers_with_the_row_and_a_fresh_add_row(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "country")
    response = admin_client.post(f"{defaults_url(cid)}/new", htmx=True, data={
        "field_id": str(fid), "set_default": "1", "value": "SE", "ask_user": "1"})
    assert response.status_code == 200
    body = html(response)
    assert body.lstrip().startswith(f'<tr id="default-{fid}"') and 'id="default-add"' in body
    assert "Sweden" in body.split('id="default-add"')[0]  # the ERP text via GetListItems
    add_row = body.split('id="default-add"')[1]
    assert f'<option value="{fid}">' not in add_row
    with app.app_context():
        country = erp_field(cid, "Customer", "country")
        assert (country.has_default, country.default_value, country.ask_user) == (True, "SE", True)
    event_actions = audit_actions(app)
    assert "default.update" in event_actions


@pytest.mark.parametrize("key, value, message", [
    ("employees", "abc", "'abc' is not a whole number"),
    ("founded", "tomorrow", "is not a date"),
    ("country", "XX", "“XX” is not an item of the ERP list Countries"),
])
def test_a_default_that_does_not_parse_is_refused_on_its_row(app, admin_client, cid, key, value, message):
    fid = field_id(app, cid, "Customer", key)
    response = admin_client.post(f"{defaults_url(cid)}/{fid}", htmx=True,
                                 data={"set_default": "1", "value": value})
    assert response.status_code == 422
    body = html(response)
    assert body.lstrip().startswith(f'<tr id="default-{fid}"') and message in text(response)
    assert 'role="alert"' in body
    with app.app_context():
        assert not erp_field(cid, "Customer", key).has_default


def test_mandatory_requires_a_default_or_ask_user(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "email")
    response = admin_client.post(f"{defaults_url(cid)}/{fid}", htmx=True, data={"mandatory": "1"})
    assert response.status_code == 422 and "A mandatory value needs a default value or Ask user" in html(response)


def test_edit_and_remove_a_default(app, admin_client, cid):
    fid = field_id(app, cid, "Customer", "employees")
    saved = admin_client.post(f"{defaults_url(cid)}/{fid}", htmx=True, data={"set_default": "1", "value": "42"})
    assert saved.status_code == 200 and re.search(r"<td>42\b", html(saved))
    count = re.search(r'id="default-count"[^>]*hx-swap-oob="true">count : (\d+)<', html(saved))
    assert count, "the count is answered out-of-band with the row"
    assert "42" in html(admin_client.get(f"{defaults_url(cid)}?actor=Customer"))
    removed = admin_client.post(f"{defaults_url(cid)}/{fid}/remove", htmx=True)
    # the row disappears; only the count (one fewer) comes back, out-of-band
    assert removed.status_code == 200 and "<tr" not in html(removed)
    assert f'hx-swap-oob="true">count : {int(count.group(1)) - 1}<' in html(removed)
    name = field_id(app, cid, "Customer", "name")
    admin_client.post(f"{defaults_url(cid)}/{name}", htmx=True, data={"set_default": "1", "value": "ACME"})
    kept = admin_client.post(f"{defaults_url(cid)}/{name}/remove", htmx=True)
    assert html(kept).lstrip().startswith(f'<tr id="default-{name}"')  # connector Mandatory: stays listed


# ============================================================================== rank

def test_rank_move_swaps_the_table(app, admin_client, cid):
    page = html(admin_client.get(f"{base(cid)}/rank?actor=Customer"))
    assert page.index("Organisation number") > page.index(">Name <")
    fid = field_id(app, cid, "Customer", "orgnr")
    response = admin_client.post(f"{base(cid)}/rank/{fid}/up", htmx=True)
    body = html(response)
    assert response.status_code == 200 and body.lstrip().startswith('<table id="rank-table"')
    assert body.index("Organisation number") < body.index(">Name <")
    assert re.search(r'aria-label="Move Organisation number up"\s+disabled', body)
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "rank.move"))
        assert event.after == {"position": 1, "swapped_with": "Name"}
    last = admin_client.post(f"{base(cid)}/rank/{fid}/bottom", htmx=True)
    assert last.status_code == 200 and re.search(r'aria-label="Move Organisation number to the bottom"\s+disabled',
                                                 html(last))
    again = admin_client.post(f"{base(cid)}/rank/{fid}/bottom", htmx=True)
    assert "is already last" in again.headers.get("HX-Trigger", "")
    assert admin_client.post(f"{base(cid)}/rank/{fid}/sideways", htmx=True).status_code == 404
