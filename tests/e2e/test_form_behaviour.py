"""Browser tests of issue #17's screen fixes, on the built-in Demo ERP connector (the server's side of each rule is
tests/integration/test_form_behaviour.py):

1. The connection form: after a passed Test, the name, description, scope and conflict rule change freely; a config
   value disables OK until it is back to the tested one (a typed secret until it is blank again). On an active
   connection every config field is locked, and a value changed anyway is refused with a warning.
2. Import criteria: a value typed right after an operator change (while that request is in flight) is kept, and Find
   uses it.
3. Mappings: unticking an actor type of an active connection asks first (Cancel leaves it on); an inactive connection
   switches at once.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.e2e.htmx import settled
from tests.e2e.worlds import save_demo_connection

pytestmark = pytest.mark.e2e

CUSTOMER_FIELDS = {"NAME": "name", "PHONE": "phone", "EMAIL": "email"}
PERSON_FIELDS = {"FIRSTNAME": "first_name", "LASTNAME": "last_name", "EMAIL": "email"}


def _active_demo_connection(live_server) -> int:
    """An active "Demo ERP" connection: Customer → company and Person → contact mapped both ways."""
    from portal.extensions import db
    from portal.services.sync_settings import ensure_in_priority

    with live_server.app.app_context():
        connection = save_demo_connection()
        for actor_type, mapping in (("Customer", CUSTOMER_FIELDS), ("Person", PERSON_FIELDS)):
            config = connection.actor_type(actor_type)
            config.is_active = True
            for f in config.fields:
                crm = mapping.get(f.field_key)
                f.crm_field, f.sync_to_crm, f.sync_to_erp = crm, crm is not None, crm is not None and not f.read_only
        connection.active = True
        ensure_in_priority(connection.id)
        db.session.commit()
        return connection.id


# ============================================================================== 1. connection form

def test_ok_needs_a_test_of_the_config_values_only_and_comes_back_when_they_do(admin_page, live_server):
    page = admin_page
    page.goto(f"{live_server.url}/settings/connections/new")
    page.get_by_label("Name").fill("Demo production")
    page.get_by_label("API user").fill("erp-sync")
    page.get_by_label("API password").fill("demo")
    ok = page.get_by_role("button", name="OK", exact=True)
    expect(ok).to_be_disabled()
    page.get_by_role("button", name="Test ERP connection").click()
    expect(page.locator("#test-result")).to_contain_text("Test passed")
    expect(ok).to_be_enabled()

    # who may use it, the conflict rule, the name and the description need no new test
    page.get_by_label("When both sides changed a field").select_option("erp")
    expect(ok).to_be_enabled()
    page.get_by_role("radio", name="Specific users and groups").check()
    page.locator("#connection-form summary").click()
    page.locator("select[name^='scope_user_']").first.select_option("create")
    page.get_by_label("With “Everyone”: everyone may also create actors in the ERP").uncheck()
    page.get_by_label("Description").fill("The production company")
    page.get_by_label("Name").fill("Demo prod")
    expect(ok).to_be_enabled()

    # a config value needs the test again, until it is back to the tested value
    company = page.get_by_label("Company database")
    company.fill("OTHER")
    expect(ok).to_be_disabled()
    company.fill("DEMO")
    expect(ok).to_be_enabled()
    page.get_by_label("Base currency").select_option("NOK")
    expect(ok).to_be_disabled()
    page.get_by_label("Base currency").select_option("EUR")
    expect(ok).to_be_enabled()
    page.get_by_label("Simulate offline ERP").check()
    expect(ok).to_be_disabled()
    page.get_by_label("Simulate offline ERP").uncheck()
    expect(ok).to_be_enabled()
    # a typed secret is a new one; left blank, it is the tested one
    password = page.get_by_label("API password")
    password.fill("something else")
    expect(ok).to_be_disabled()
    password.fill("")
    expect(ok).to_be_enabled()

    ok.click()
    page.wait_for_url(re.compile(r"/settings/sync\?connection=\d+"))
    connection_id = int(page.url.rsplit("=", 1)[1])
    from portal.extensions import db
    from portal.models import Connection
    from portal.services.connections import full_config

    with live_server.app.app_context():
        connection = db.session.get(Connection, connection_id)
        assert (connection.name, connection.description, connection.conflict_policy) == \
            ("Demo prod", "The production company", "erp")
        assert connection.all_access is False and [row.can_create for row in connection.access] == [True]
        assert full_config(connection)["ApiPassword"] == "demo"

    # Configure: OK follows the saved values too
    page.goto(f"{live_server.url}/settings/connections/{connection_id}/edit")
    expect(ok).to_be_enabled()
    company.fill("OTHER")
    expect(ok).to_be_disabled()
    company.fill("DEMO")
    expect(ok).to_be_enabled()



def test_configure_on_an_active_connection_locks_every_config_field_and_never_drops_a_change_silently(
        admin_page, live_server):
    """Issue #17, item 1: "Company database" was editable on an active connection (``disabledrequired``) and a
    changed value vanished on OK without a word."""
    from portal.extensions import db
    from portal.models import Connection

    page, url = admin_page, live_server.url
    connection_id = _active_demo_connection(live_server)
    page.goto(f"{url}/settings/connections/{connection_id}/edit")
    config = page.locator("#config-fields")
    expect(config).to_contain_text("can only be changed while the connection is inactive")
    expect(page.get_by_label("Company database")).to_be_disabled()
    inputs = config.locator("input:not([type='hidden']), select, textarea")
    expect(inputs).not_to_have_count(0)
    for field in inputs.all():
        expect(field).to_be_disabled()
    expect(page.get_by_role("button", name="OK", exact=True)).to_be_enabled()  # name, scope and rule still change

    # A form opened while the connection was inactive, activated meanwhile by someone else: the typed value is not
    # used, and the admin is told so.
    with live_server.app.app_context():
        db.session.get(Connection, connection_id).active = False
        db.session.commit()
    page.goto(f"{url}/settings/connections/{connection_id}/edit")
    company = page.get_by_label("Company database")
    company.fill("OTHER")
    with live_server.app.app_context():
        db.session.get(Connection, connection_id).active = True
        db.session.commit()
    page.get_by_role("button", name="Test ERP connection").click()
    expect(page.locator("#toasts")).to_contain_text(
        "Company database not changed: the configuration of an active connection is locked")
    expect(company).to_be_disabled()
    expect(company).to_have_value("DEMO")  # the stored value, shown locked
    with live_server.app.app_context():
        assert db.session.get(Connection, connection_id).config_values["CompanyDb"] == "DEMO"


# ============================================================================== 2. import criteria

def test_a_value_typed_right_after_an_operator_change_is_kept_and_found(admin_page, live_server):
    from portal.connectors.builtin.demo import DemoErpConnector

    cid = _active_demo_connection(live_server)
    demo = DemoErpConnector.for_path(live_server.app.config["DEMO_ERP_DB"])
    total, customers = demo.browse("Customer", limit=500)
    names = [c["FieldValues"]["NAME"] for c in customers]
    wanted = next(n for n in names if sum(n.lower() in other.lower() for other in names) == 1)
    assert total > 1

    page = admin_page
    page.goto(f"{live_server.url}/settings/import/erp/search?connection_id={cid}&actor_type=Customer")
    operator = page.get_by_label("Operator of criterion 1")
    value = page.get_by_label("Value of criterion 1")
    expect(operator).to_have_value("=")

    # Between adds the "To" input and names the first one "From"
    operator.select_option(label="Between")
    expect(page.get_by_label("To (criterion 1)")).to_be_visible()
    expect(page.get_by_label("From of criterion 1")).to_be_visible()

    # hold the operator change's request: what is typed meanwhile must survive its answer
    held = []

    def hold(route):
        if route.request.method == "POST" and "action=find" not in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/settings/import/erp/search", hold)
    operator.select_option(label="Contains")
    page.get_by_label("From of criterion 1").fill(wanted)
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the operator change did not post"
    with page.expect_response(lambda r: "/import/erp/search" in r.url and r.request.method == "POST"):
        held.pop().continue_()
    settled(page)
    expect(value).to_have_value(wanted)
    expect(page.get_by_label("To (criterion 1)")).to_have_count(0)

    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_text("1 Customer actor(s) found")).to_be_visible()
    expect(page.locator("#results tbody")).to_contain_text(wanted)
    expect(operator).to_have_value("contains")


# ============================================================================== 3. mappings switch

def test_switching_off_an_actor_type_of_an_active_connection_asks_first(admin_page, live_server):
    from portal.extensions import db
    from portal.models import Company, Connection, Link

    cid = _active_demo_connection(live_server)
    with live_server.app.app_context():
        companies = db.session.scalars(select(Company).order_by(Company.id).limit(2)).all()
        for n, company in enumerate(companies):
            db.session.add(Link(connection_id=cid, crm_type="company", crm_id=company.id, erp_actor_type="Customer",
                                erp_key=f"C-{n}", base={}, status="ok"))
        db.session.commit()

    def is_on(actor_type: str) -> bool:
        with live_server.app.app_context():
            db.session.expire_all()
            return db.session.get(Connection, cid).actor_type(actor_type).is_active

    page = admin_page
    page.goto(f"{live_server.url}/settings/connections/{cid}/mappings?actor=Customer")
    switch = page.get_by_label('Sync ERP "Customer" to CRM "Company"')
    # click, not uncheck(): the switch is replaced by the question, so there is no unticked box left to verify
    switch.click()
    alert = page.locator("#actor-switch [role=alert]")
    expect(alert).to_contain_text("Stop syncing ERP “Customer” to CRM “Company”?")
    expect(alert).to_contain_text("2 linked CRM Company records stop syncing")
    cancel = page.locator("#actor-switch").get_by_role("button", name="Cancel")
    expect(cancel).to_be_focused()
    assert is_on("Customer")

    # Cancel leaves it on
    cancel.click()
    expect(switch).to_be_checked()
    expect(page.locator("#actor-switch [role=alert]")).to_have_count(0)
    assert is_on("Customer")

    # asked again, and confirmed
    switch.click()
    page.get_by_role("button", name="Stop syncing Customer").click()
    expect(switch).not_to_be_checked()
    expect(page.locator("#toasts")).to_contain_text("Customer does not sync")
    assert not is_on("Customer")
    with live_server.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link).where(Link.connection_id == cid)) == 2

    # an inactive connection switches at once
    page.get_by_role("button", name="Deactivate connection").click()
    expect(page.get_by_role("button", name="Activate connection")).to_be_visible()
    page.goto(f"{live_server.url}/settings/connections/{cid}/mappings?actor=Person")
    person = page.get_by_label('Sync ERP "Person" to CRM "Contact"')
    with page.expect_response(lambda r: r.url.endswith("/mappings/Person/switch")):
        person.click()
    settled(page)
    expect(page.locator("#actor-switch [role=alert]")).to_have_count(0)
    expect(person).not_to_be_checked()
    assert not is_on("Person")
