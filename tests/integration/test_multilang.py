"""Connector texts in SuperOffice's multi-language form (US:"…";NO:"…") are shown in the user's language: the
Account page's choice, else the browser's Accept-Language, else US (portal/i18n.py, portal/services/multilang.py).

The Demo ERP gives the config field SimulateOffline and the Customer field CUSTOMERGROUP in that form."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Connector, User

pytestmark = pytest.mark.db

US_LABEL, NO_LABEL = "Simulate offline ERP", "Simuler at ERP-et er frakoblet"
US_HINT, NO_HINT = "Answer every call with a Warning (&#34;ERP is offline&#34;)", \
    "Svar på hvert kall med en advarsel (&#34;ERP er frakoblet&#34;)"


@pytest.fixture
def demo(app):
    with app.app_context():
        row = Connector(name="Demo ERP", url="builtin:demo")
        db.session.add(row)
        db.session.commit()
        return row.id


def _form(client, demo, **headers) -> str:
    response = client.get(f"/settings/connections/new?connector_id={demo}", headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _language(app, user_id):
    with app.app_context():
        return db.session.get(User, user_id).language


def test_the_account_page_offers_the_languages_and_saves_the_choice(app, admin_client, users, demo):
    page = admin_client.get("/account").get_data(as_text=True)
    assert 'name="language"' in page and ">From the browser</option>" in page and ">Norsk</option>" in page
    assert "From the browser: now English (US)." in page

    saved = admin_client.post("/account", data={"language": "NO"}, htmx=True)
    assert saved.status_code == 200 and saved.headers["HX-Redirect"] == "/account"
    assert _language(app, users["alice"]) == "NO"
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user.language")).one()
        assert (event.before, event.after) == ({"language": None}, {"language": "NO"})
    page = admin_client.get("/account").get_data(as_text=True)
    assert '<option selected value="NO">Norsk</option>' in page or '<option value="NO" selected>' in page

    html = _form(admin_client, demo)
    assert NO_LABEL in html and NO_HINT in html
    assert US_LABEL not in html and 'US:&#34;' not in html and 'US:"' not in html

    # back to "From the browser": the browser's language again
    admin_client.post("/account", data={"language": ""}, htmx=True)
    assert _language(app, users["alice"]) is None
    html = _form(admin_client, demo)
    assert US_LABEL in html and US_HINT in html and NO_LABEL not in html


def test_a_refused_language_is_422_and_keeps_the_choice(app, admin_client, users):
    refused = admin_client.post("/account", data={"language": "XX"}, htmx=True)
    assert refused.status_code == 422
    assert 'id="language-form"' in refused.get_data(as_text=True)
    assert 'aria-invalid="true"' in refused.get_data(as_text=True)
    assert _language(app, users["alice"]) is None


def test_a_page_post_redirects_with_a_message(app, admin_client, users):
    saved = admin_client.post("/account", data={"language": "GB"}, follow_redirects=True)
    assert saved.status_code == 200
    assert "ERP texts are now shown in English (UK)." in saved.get_data(as_text=True)
    assert _language(app, users["alice"]) == "GB"


@pytest.mark.parametrize("header, label", [
    ("nb-NO,nb;q=0.9,en;q=0.8", NO_LABEL),
    ("no", NO_LABEL),
    ("nn-NO", NO_LABEL),
    ("de-DE,nb;q=0.5", US_LABEL),  # German is offered but the Demo ERP has no German text: US
    ("xx-YY, tlh", US_LABEL),  # nothing supported: US
    ("en-GB,nb;q=0.9", US_LABEL),  # GB first: no GB text, so US
    ("fr;q=0, nb;q=0.2", NO_LABEL),  # q=0 means "not French"
    ("", US_LABEL),
])
def test_without_a_choice_the_browser_language_counts(admin_client, demo, header, label):
    html = _form(admin_client, demo, **{"Accept-Language": header})
    assert label in html
    assert ({US_LABEL, NO_LABEL} - {label}).pop() not in html


def test_the_users_choice_beats_the_browser(app, admin_client, users, demo):
    with app.app_context():
        db.session.get(User, users["alice"]).language = "US"
        db.session.commit()
    assert US_LABEL in _form(admin_client, demo, **{"Accept-Language": "nb-NO"})


def test_the_mapping_screens_show_the_erp_fields_in_the_users_language(app, admin_client, users, demo):
    from tests.integration.helpers_mapping import field_id

    data = {"name": "Demo", "connector_id": str(demo), "description": "", "scope": "everyone",
            "all_can_create": "1", "conflict_policy": "priority", "cfg_CompanyDb": "DEMO"}
    tested = admin_client.post("/settings/connections/new", data={**data, "action": "test"}, htmx=True)
    html = tested.get_data(as_text=True)
    marker = 'name="test_token" type="hidden" value="'
    token = html[html.index(marker) + len(marker):].split('"', 1)[0]
    saved = admin_client.post("/settings/connections/new", data={**data, "action": "save", "test_token": token},
                              htmx=True)
    connection_id = int(saved.headers["HX-Redirect"].split("connection=")[1])

    mappings = admin_client.get(f"/settings/connections/{connection_id}/mappings?actor=Customer",
                                headers={"Accept-Language": "nb-NO"}).get_data(as_text=True)
    assert "Kundegruppe" in mappings and "Pris- og rabattgruppe" in mappings
    assert "Customer group" not in mappings and "US:&#34;" not in mappings
    mappings = admin_client.get(f"/settings/connections/{connection_id}/mappings?actor=Customer",
                                headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert "Customer group" in mappings and "Kundegruppe" not in mappings

    # the Defaults editor and Add list, and the list mapping of the field, in Norwegian
    admin_client.post("/account", data={"language": "NO"}, htmx=True)
    group = field_id(app, connection_id, "Customer", "CUSTOMERGROUP")
    editor = admin_client.get(f"/settings/connections/{connection_id}/defaults/new?field_id={group}",
                              htmx=True).get_data(as_text=True)
    assert "Kundegruppe" in editor and "Customer group" not in editor
    defaults = admin_client.get(f"/settings/connections/{connection_id}/defaults?actor=Customer").get_data(
        as_text=True)
    assert "Kundegruppe (List)" in defaults


def test_outside_a_request_the_language_is_us(app):
    from portal import i18n

    with app.app_context():
        assert i18n.current_language() == "US"
        assert i18n.localize('US:"a";NO:"b"') == "a"
        assert i18n.localize('US:"a";NO:"b"', "NO") == "b"


def test_the_lang_filter_leaves_markup_and_other_values_alone(app):
    from markupsafe import Markup

    with app.test_request_context(headers={"Accept-Language": "nb"}):
        render = app.jinja_env.from_string("{{ a | lang }}|{{ b | lang }}|{{ c | lang }}|{{ d | lang }}").render
        assert render(a='US:"x";NO:"y"', b=None, c=Markup('US:"x";NO:"<b>y</b>"'), d="Plain: text") == \
            'y|None|US:"x";NO:"<b>y</b>"|Plain: text'
