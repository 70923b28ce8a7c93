"""Search before create, enforced by the server (issue #18, point 6.2; spec §2.4): the Create form and the Create
POST need the proof a search of the same dialog handed out — for this user, connection, record, actor type and
dialog, within 30 minutes. Anything else is answered in the dialog (422) with "search first", never created, never
a 500. (Set-up and helpers: tests/integration/test_erp_tab.py.)"""

from __future__ import annotations

import html as htmllib
import re
import time

import pytest
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select

from portal.erp_tab import search_proof
from portal.extensions import db
from portal.models import Link
from tests.conftest import form_of
from tests.integration import test_erp_tab as tab

conn, connector_id, crm = tab.conn, tab.connector_id, tab.crm  # fixtures

NONCE = "s" * 24
SEARCH_FIRST = "Search the ERP first: a new Customer can be created only from the results of a search in this dialog"


def _create_button_url(body: str) -> str:
    found = re.search(r'hx-get="([^"]*/create/Customer\?[^"]*)"', body)
    assert found, body
    return htmllib.unescape(found.group(1))


def _links(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Link))


def test_the_create_button_of_the_results_carries_a_proof_that_the_create_form_posts_back(app, user_client, conn,
                                                                                          crm, fake):
    results = user_client.get(tab.url("company", crm["beta"], conn, "/connect/Customer/search"),
                              query_string={"q": "Beta", "nonce": NONCE}, htmx=True)
    create_url = _create_button_url(tab.text(results))
    assert f"nonce={NONCE}" in create_url and "proof=" in create_url
    dialog = user_client.get(create_url, htmx=True)
    assert dialog.status_code == 200, tab.text(dialog)
    data = form_of(tab.text(dialog))
    assert data["proof"] == re.search(r"proof=([^&]+)", create_url).group(1) and data["nonce"] == NONCE
    data[tab.ask_name(app, conn, "creditlimit")] = "1"
    response = user_client.post(tab.url("company", crm["beta"], conn, "/create/Customer"), data=data, htmx=True)
    assert response.status_code == 200, tab.text(response)
    assert len(fake.service.created) == 1 and _links(app) == 1


def test_an_advanced_search_hands_out_the_proof_too(app, user_client, conn, crm, fake):
    with app.app_context():
        from portal.models import Connection

        name_id = next(f.id for f in db.session.get(Connection, conn).actor_type("Customer").fields
                       if f.field_key == "name")
    results = user_client.get(tab.url("company", crm["beta"], conn, "/connect/Customer/advanced/search"),
                              query_string={"nonce": NONCE, f"use_{name_id}": "1", f"op_{name_id}": "begins",
                                            f"v_{name_id}": "Beta"}, htmx=True)
    assert results.status_code == 200, tab.text(results)
    assert user_client.get(_create_button_url(tab.text(results)), htmx=True).status_code == 200


def test_a_user_who_may_not_create_gets_no_proof(app, admin_client, user_client, connector_id, crm, fake):
    cid = tab.configure(app, admin_client, connector_id, "No creates", all_can_create="")
    results = tab.text(user_client.get(tab.url("company", crm["beta"], cid, "/connect/Customer/search"),
                                       query_string={"q": "", "nonce": NONCE}, htmx=True))
    assert "proof=" not in results and "create in ERP" not in results


def _issued_31_minutes_ago(app, user_id, conn, record_id):
    real = TimestampSigner.get_timestamp
    try:
        TimestampSigner.get_timestamp = lambda self: int(time.time()) - 31 * 60
        with app.test_request_context():
            return search_proof.issue(user_id, conn, "company", record_id, "Customer", NONCE)
    finally:
        TimestampSigner.get_timestamp = real


def _proof(case, app, admin_client, user_client, connector_id, conn, crm, users):
    """The proof the refused request carries, for each way of not having searched."""
    beta = crm["beta"]
    if case == "missing":
        return ""
    good = tab.search_proof(user_client, "company", beta, conn, nonce=NONCE)
    assert good
    if case == "tampered":  # a proof for Acme, its claims changed to Beta and its signature kept
        acme = tab.search_proof(user_client, "company", crm["acme"], conn, nonce=NONCE)
        head, signature = acme.rsplit(".", 1)
        claims = URLSafeTimedSerializer("x").loads_unsafe(acme)[1]
        assert claims[3] == crm["acme"]
        claims[3] = beta
        forged_head = URLSafeTimedSerializer("x", salt=search_proof.SALT).dumps(claims).rsplit(".", 1)[0]
        assert forged_head != head
        return f"{forged_head}.{signature}"
    if case == "signed with another key":
        with app.test_request_context():
            claims = search_proof._claims(users["bob"], conn, "company", beta, "Customer", NONCE)
        return URLSafeTimedSerializer("not-the-portal-key", salt=search_proof.SALT).dumps(claims)
    if case == "other record":
        return tab.search_proof(user_client, "company", crm["acme"], conn, nonce=NONCE)
    if case == "other user":
        return tab.search_proof(admin_client, "company", beta, conn, nonce=NONCE)  # alice's search, bob's Create
    if case == "other actor type":
        return tab.search_proof(user_client, "company", beta, conn, actor_type="Supplier", nonce=NONCE)
    if case == "other connection":
        staging = tab.configure(app, admin_client, connector_id, "Fake staging")
        return tab.search_proof(user_client, "company", beta, staging, nonce=NONCE)
    if case == "other dialog":
        return tab.search_proof(user_client, "company", beta, conn, nonce="o" * 24)
    if case == "expired":
        return _issued_31_minutes_ago(app, users["bob"], conn, beta)
    if case == "garbage":
        return "ü" * 40 + "." * 3000
    raise AssertionError(case)


CASES = ["missing", "tampered", "signed with another key", "other record", "other user", "other actor type",
         "other connection", "other dialog", "expired", "garbage"]


@pytest.mark.parametrize("case", CASES)
def test_the_create_form_and_post_without_a_valid_proof_are_refused_in_the_dialog(case, app, admin_client,
                                                                                  user_client, connector_id, conn,
                                                                                  crm, users, fake):
    proof = _proof(case, app, admin_client, user_client, connector_id, conn, crm, users)
    form = user_client.get(tab.url("company", crm["beta"], conn, "/create/Customer"),
                           query_string={"nonce": NONCE, "proof": proof}, htmx=True)
    posted = user_client.post(tab.url("company", crm["beta"], conn, "/create/Customer"),
                              data={"nonce": NONCE, "proof": proof,
                                    tab.ask_name(app, conn, "creditlimit"): "1"}, htmx=True)
    for response in (form, posted):
        body = tab.text(response)
        assert response.status_code == 422, body
        assert "Create in ERP “Fake production”" in body and "Back to search" in body  # in the dialog
        if case == "expired":
            assert ("Your search was more than 30 minutes ago: search the ERP again before creating a Customer"
                    in body)
        else:
            assert SEARCH_FIRST in body
        assert 'name="proof"' not in body  # no Create form
    assert not fake.calls_to("CreateActor") and not fake.service.created and _links(app) == 0


def test_a_proof_is_checked_after_the_rights(app, outsider_client, user_client, conn, crm):
    """No licence or no right to create stays a 403 whatever the proof; a contact under an unconnected company a
    409: the proof is never a way around them, and its refusal never hides theirs."""
    proof = tab.search_proof(user_client, "company", crm["beta"], conn, nonce=NONCE)
    refused = outsider_client.get(tab.url("company", crm["beta"], conn, "/create/Customer"),
                                  query_string={"nonce": NONCE, "proof": proof}, htmx=True)
    assert refused.status_code == 403
    blocked = user_client.post(tab.url("contact", crm["ola"], conn, "/create/Person"),
                               data={"nonce": NONCE, "proof": ""}, htmx=True)
    assert blocked.status_code == 409


def test_the_proof_lasts_30_minutes_from_the_search(app, user_client, conn, crm, users, fake):
    with app.app_context():
        app.config["ERP_SEARCH_PROOF_MAX_AGE"] = 40 * 60  # a longer window admits the 31-minute-old search
    proof = _issued_31_minutes_ago(app, users["bob"], conn, crm["beta"])
    assert tab.open_create(user_client, "company", crm["beta"], conn, nonce=NONCE, proof=proof).status_code == 200
    app.config.pop("ERP_SEARCH_PROOF_MAX_AGE")
    assert tab.open_create(user_client, "company", crm["beta"], conn, nonce=NONCE, proof=proof).status_code == 422
