"""The CRM forms apply portal/services/crm_rules.py (the rules the import and the sync apply too): a value the CRM
cannot hold is refused with a message on its field (422, the htmx partial), a good one saves, and a value the
record already holds — legacy data, e.g. ``post10@erp`` written by a sync before these rules — never blocks the
save of a field the user did not change."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Contact, Project
from tests.conftest import add_record

pytestmark = pytest.mark.db


def _text(response) -> str:
    return response.get_data(as_text=True)


def _field_error(body: str, field: str) -> str:
    match = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', body)
    assert match, f"no error shown on {field}"
    return match.group(1)


def _get(app, model, ident):
    with app.app_context():
        obj = db.session.get(model, ident)
        db.session.expunge(obj)
        return obj


def test_an_erp_style_email_is_refused_on_its_field_and_a_good_one_saves(app, user_client):
    response = user_client.post("/companies/new", htmx=True, data={"name": "Post Ten AS", "email": "post10@erp"})
    body = _text(response)
    assert response.status_code == 422 and "<html" not in body
    assert _field_error(body, "email") == "Enter a valid e-mail address, such as name@example.com."
    assert 'value="post10@erp"' in body  # the input is kept
    with app.app_context():
        assert db.session.scalar(select(Company)) is None
    response = user_client.post("/companies/new", htmx=True, data={"name": "Post Ten AS",
                                                                    "email": "post10@erp.example"})
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    with app.app_context():
        assert db.session.scalar(select(Company.email)) == "post10@erp.example"


def test_contact_email_uses_the_same_rule(app, user_client):
    response = user_client.post("/contacts/new", htmx=True, data={"last_name": "Hansen", "email": "post10@erp"})
    assert response.status_code == 422
    assert _field_error(_text(response), "email") == "Enter a valid e-mail address, such as name@example.com."
    response = user_client.post("/contacts/new", htmx=True, data={"last_name": "Hansen", "email": "ola@erp.no"})
    assert response.status_code == 200


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<b>x</b>", "www.example.com"])
def test_a_web_site_must_be_http_or_https(app, user_client, url):
    response = user_client.post("/projects/new", htmx=True, data={"name": "Launch", "url": url})
    assert response.status_code == 422
    assert _field_error(_text(response), "url") == "Enter a web address starting with http:// or https://."
    response = user_client.post("/projects/new", htmx=True, data={"name": "Launch", "url": "https://launch.example"})
    assert response.status_code == 200


def test_over_long_text_is_refused_on_its_field(app, user_client):
    response = user_client.post("/companies/new", htmx=True, data={"name": "Acme", "postal_zip": "1" * 21})
    assert response.status_code == 422
    assert _field_error(_text(response), "postal_zip") == "Postal zip code can be at most 20 characters."


def test_a_stored_value_the_crm_refuses_does_not_block_saving_other_fields(app, user_client):
    # As a sync wrote them before these rules existed: every save answered 422 until someone fixed the e-mail.
    company_id = add_record(app, Company, name="Post Ten AS", email="post10@erp", url="javascript:alert(1)")
    url = f"/companies/{company_id}/edit"
    response = user_client.post(url, htmx=True, data={"name": "Post Ten AS", "email": "post10@erp",
                                                       "url": "javascript:alert(1)", "postal_city": "Oslo"})
    assert response.status_code == 200 and response.headers["HX-Redirect"] == f"/companies/{company_id}"
    assert _get(app, Company, company_id).postal_city == "Oslo"
    # A changed value is checked: the user cannot type another bad one (nor re-type a different bad one).
    response = user_client.post(url, htmx=True, data={"name": "Post Ten AS", "email": "post11@erp",
                                                       "url": "javascript:alert(1)"})
    assert response.status_code == 422
    body = _text(response)
    assert _field_error(body, "email").startswith("Enter a valid e-mail address")
    assert 'id="url-error"' not in body
    # ...and a good value replaces the stored one.
    response = user_client.post(url, htmx=True, data={"name": "Post Ten AS", "email": "post@ten.example",
                                                       "url": "https://ten.example"})
    assert response.status_code == 200
    company = _get(app, Company, company_id)
    assert (company.email, company.url) == ("post@ten.example", "https://ten.example")


def test_a_stored_birth_date_in_the_future_does_not_block_saving_the_contact(app, user_client):
    future = date.today() + timedelta(days=30)
    contact_id = add_record(app, Contact, last_name="Later", birth_date=future)
    response = user_client.post(f"/contacts/{contact_id}/edit", htmx=True,
                                data={"last_name": "Later", "first_name": "Lisa", "birth_date": future.isoformat()})
    assert response.status_code == 200
    assert _get(app, Contact, contact_id).first_name == "Lisa"
    response = user_client.post("/contacts/new", htmx=True, data={"last_name": "New", "birth_date": future.isoformat()})
    assert response.status_code == 422
    assert _field_error(_text(response), "birth_date") == "The birth date cannot be in the future."


def test_a_project_name_is_still_required(app, user_client):
    project_id = add_record(app, Project, name="Roll-out")
    response = user_client.post(f"/projects/{project_id}/edit", htmx=True, data={"name": "  "})
    assert response.status_code == 422
    assert _field_error(_text(response), "name") == "Project name is required."
