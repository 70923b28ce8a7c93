"""Settings → Sync → Issues (portal/services/sync_issues.py, sync_issue_actions.py, admin/routes_issues.py) against
the fake connector: a record the sync cannot write shows with its reason, the filters, Retry now after the value is
fixed closes it, Uncouple deletes the link (audited), Ignore hides it until its error changes, bulk actions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from portal.database import utcnow
from portal.extensions import db
from portal.models import AuditEvent, Contact, Link, RunStatus, SyncChange, SyncIssueIgnore, SyncRun
from portal.services import sync_issues
from tests import sync_support as s

pytestmark = pytest.mark.db

INBOX = "/settings/sync/issues"


@pytest.fixture
def world(app, fake):
    """Three linked companies: Acme gets an ERP e-mail the CRM refuses, Long AS a CRM org. no. too long for the
    ERP, Gone AS loses its ERP actor (broken); Fine AS syncs."""
    with app.app_context():
        cid = s.make_connection(fake, name="Fake ERP")
        acme, acme_key, acme_link = s.link_company(fake, cid, name="Acme AS", email="a@acme.example")
        long_, _key, long_link = s.link_company(fake, cid, name="Long AS")
        gone, gone_key, gone_link = s.link_company(fake, cid, name="Gone AS")
        fine, _key, fine_link = s.link_company(fake, cid, name="Fine AS")
        fake.update_actor("Customer", acme_key, {"email": "not an e-mail"})
        s.edit_company(long_, vat_no="X" * 30)
        fake.delete_actor("Customer", gone_key)
        s.edit_company(gone, phone="1")
        s.edit_company(fine, phone="2")
        assert s.run(cid).status == RunStatus.PARTIAL
        return {"connection": cid, "acme": acme, "acme_key": acme_key, "acme_link": acme_link, "long": long_,
                "long_link": long_link, "gone": gone, "gone_link": gone_link, "fine_link": fine_link}


def inbox(client, **query) -> str:
    response = client.get(INBOX, query_string=query, htmx=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def rows(html: str) -> dict[int, str]:
    """{link id: the row's HTML} of the issues listed."""
    found = {}
    for match in re.finditer(r'<tr id="issue-(\d+)">(.*?)</tr>', html, re.S):
        found[int(match.group(1))] = match.group(2)
    return found


def group_of(html: str, link_id: int) -> str:
    """The reason heading of the group a row is in."""
    before = html[:html.index(f'<tr id="issue-{link_id}">')]
    return re.findall(r'<th scope="rowgroup" colspan="6">([^<]+?) <span', before)[-1]


def post(client, action: str, **data):
    return client.post(f"{INBOX}/{action}", data=data, htmx=True)


def audits(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_the_inbox_lists_each_failing_record_under_its_reason(app, admin_client, world):
    html = inbox(admin_client)
    listed = rows(html)
    assert set(listed) == {world["acme_link"], world["long_link"], world["gone_link"]}
    assert group_of(html, world["acme_link"]) == "Value the CRM refuses"
    assert "E-mail could not be written to the CRM" in listed[world["acme_link"]]
    assert "Synced:" not in listed[world["acme_link"]] and "In sync" not in listed[world["acme_link"]]
    assert group_of(html, world["long_link"]) == "Value the ERP cannot take"
    assert "at most 20 characters" in listed[world["long_link"]]
    assert group_of(html, world["gone_link"]) == "Broken link"
    assert "Failed 1 time" in listed[world["acme_link"]]
    assert f'href="/companies/{world["acme"]}?tab=erp"' in listed[world["acme_link"]]
    assert "3 issues." in html
    page = admin_client.get(INBOX).get_data(as_text=True)  # the whole page, with the Settings navigation
    assert '<a href="/settings/sync/issues" aria-current="page">Sync issues</a>' in page
    assert '<a href="/settings/sync">Sync</a>' in page  # not current at the same time


def test_the_filters(app, admin_client, fake, world):
    assert set(rows(inbox(admin_client, reason="broken"))) == {world["gone_link"]}
    assert set(rows(inbox(admin_client, reason="crm_refused"))) == {world["acme_link"]}
    assert rows(inbox(admin_client, crm_type="contact")) == {}
    assert len(rows(inbox(admin_client, crm_type="company"))) == 3
    with app.app_context():
        other = s.make_connection(fake, name="Other ERP")
    assert rows(inbox(admin_client, connection=other)) == {}
    assert len(rows(inbox(admin_client, connection=world["connection"]))) == 3
    assert rows(inbox(admin_client, age="7d")) == {}
    with app.app_context():  # Acme's error was first logged 8 days ago
        db.session.execute(update(SyncChange).where(SyncChange.link_id == world["acme_link"])
                           .values(at=utcnow() - timedelta(days=8)))
        db.session.commit()
    assert set(rows(inbox(admin_client, age="7d"))) == {world["acme_link"]}
    # a value no filter knows filters nothing
    assert len(rows(inbox(admin_client, reason="nonsense", connection="x", age="1y"))) == 3
    # the reasons with their counts, whatever the reason filter
    html = inbox(admin_client, reason="broken")
    assert "Value the CRM refuses <span class=\"badge\">1</span>" in html


def test_retry_now_after_fixing_the_value_clears_the_issue(app, admin_client, fake, world):
    response = post(admin_client, "retry", row=world["acme_link"])  # still wrong: the issue stays
    assert response.status_code == 200 and world["acme_link"] in rows(response.get_data(as_text=True))
    fake.update_actor("Customer", world["acme_key"], {"email": "fixed@acme.example"})
    response = post(admin_client, "retry", row=world["acme_link"], reason="crm_refused")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert world["acme_link"] not in rows(html) and "No open sync issues match these filters" in html
    assert "Synced: 1 field updated in the CRM" in response.headers["HX-Trigger"]
    with app.app_context():
        link = s.get_link(world["acme_link"])
        assert link.failures == 0 and link.retry_at is None
        assert s.company(world["acme"]).email == "fixed@acme.example"
        run = db.session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert run.kind == "record" and run.requested_by_label == "alice@example.com"
    [first, second] = audits(app, "sync_issue.retry")
    assert second.object_type == "company" and second.object_id == world["acme"]
    assert second.object_repr == f"Company Acme AS ↔ Customer {world['acme_key']}"
    assert second.actor_label == "alice@example.com"


def test_uncouple_deletes_the_link_with_an_audit_row(app, admin_client, fake, world):
    fake.requests.clear()
    response = post(admin_client, "uncouple", row=world["gone_link"])
    assert response.status_code == 200 and world["gone_link"] not in rows(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.get(Link, world["gone_link"]) is None
        assert s.company(world["gone"]) is not None  # the CRM record stays
    [event] = audits(app, "sync_issue.uncouple")
    assert event.object_id == world["gone"] and event.before["actor"].startswith("Customer ")
    assert event.after == {"actor": None}
    assert fake.calls == []  # the connector is not called


def test_ignore_hides_the_issue_until_its_error_changes(app, admin_client, fake, world):
    cid = world["connection"]
    response = post(admin_client, "ignore", row=world["acme_link"])
    assert response.status_code == 200 and world["acme_link"] not in rows(response.get_data(as_text=True))
    assert set(rows(inbox(admin_client, show="ignored"))) == {world["acme_link"]}
    assert "ignored by alice@example.com" in inbox(admin_client, show="ignored")
    [event] = audits(app, "sync_issue.ignore")
    assert "E-mail could not be written to the CRM" in event.after["error"]
    with app.app_context():
        assert sync_issues.counts_by_connection()[cid].errors == 1  # Long AS; Acme is ignored
        assert sync_issues.counts_by_connection()[cid].ignored == 1

    def retry_due_and_run():
        with app.app_context():
            db.session.execute(update(Link).values(retry_at=utcnow() - timedelta(seconds=1))
                               .where(Link.id == world["acme_link"]))
            db.session.commit()
            s.run(cid)

    retry_due_and_run()  # the same error again: still hidden
    assert world["acme_link"] not in rows(inbox(admin_client))
    fake.update_actor("Customer", world["acme_key"], {"email": "still wrong"})
    retry_due_and_run()  # another error: shown again
    listed = rows(inbox(admin_client))
    assert world["acme_link"] in listed and "still wrong" in listed[world["acme_link"]]
    # stop ignoring brings an ignored issue back at once
    post(admin_client, "ignore", row=world["long_link"])
    assert world["long_link"] not in rows(inbox(admin_client))
    response = post(admin_client, "unignore", row=world["long_link"], show="ignored")
    assert response.status_code == 200 and "No ignored issues." in response.get_data(as_text=True)
    assert world["long_link"] in rows(inbox(admin_client))


def test_bulk_retry_queues_a_run_that_takes_the_ticked_records(app, admin_client, fake, world):
    fake.update_actor("Customer", world["acme_key"], {"email": "fixed@acme.example"})
    with app.app_context():
        s.edit_company(world["long"], vat_no="123")
    response = admin_client.post(f"{INBOX}/retry", data={"link": [world["acme_link"], world["long_link"]]},
                                 htmx=True)
    assert response.status_code == 200 and "2 records will be retried" in response.headers["HX-Trigger"]
    assert len(audits(app, "sync_issue.retry")) == 2
    with app.app_context():
        run = db.session.scalar(select(SyncRun).where(SyncRun.status == "queued"))
        assert run is not None and run.kind == "sync" and run.trigger == "manual"
        from portal.services.sync import engine

        assert engine.execute_run(run.id).status == RunStatus.SUCCEEDED  # a run skips the broken Gone AS
    assert set(rows(inbox(admin_client))) == {world["gone_link"]}


def test_bulk_ignore_and_uncouple(app, admin_client, world):
    response = admin_client.post(f"{INBOX}/ignore", data={"link": [world["acme_link"], world["long_link"]]},
                                 htmx=True)
    assert set(rows(response.get_data(as_text=True))) == {world["gone_link"]}
    response = admin_client.post(f"{INBOX}/uncouple", data={"link": [world["acme_link"], world["long_link"]],
                                                            "show": "ignored"}, htmx=True)
    assert response.status_code == 200 and "No ignored issues." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 2
        assert db.session.scalar(select(func.count()).select_from(SyncIssueIgnore)) == 0
    assert len(audits(app, "sync_issue.uncouple")) == 2


def test_an_action_without_a_record_is_422_with_the_reason(admin_client, world):
    for action in ("retry", "uncouple", "ignore", "unignore"):
        response = post(admin_client, action)
        assert response.status_code == 422
        assert "Choose at least one record" in response.get_data(as_text=True)
    response = post(admin_client, "retry", link="nonsense")
    assert response.status_code == 422
    response = post(admin_client, "retry", link=str(world["fine_link"] + 1000))
    assert response.status_code == 422


def test_a_plain_post_redirects_back_to_the_filtered_inbox(admin_client, world):
    response = admin_client.post(f"{INBOX}/ignore", data={"row": world["long_link"], "reason": "erp_value"})
    assert response.status_code == 302 and response.headers["Location"] == f"{INBOX}?reason=erp_value"


def test_the_reason_is_derived_from_the_engines_messages(app, world):
    texts = {
        "Synced: 1 field to the CRM; Fake ERP refused the changes: Record locked": "erp_refused",
        "In sync; Company in the CRM: Acme is not linked to Fake ERP, so the contact's parent there is left as it "
        "is": "parent",
        "Fake ERP kept the person under C1; the move to Customer C2 was not taken": "parent",
        "In sync; Country in Fake ERP: XX has no list mapping": "unreadable",
        "Something else broke": "other",
    }
    with app.app_context():
        company = s.company(world["acme"])
        contact = Contact(first_name="Kari", last_name="Nord", company_id=company.id)
        db.session.add(contact)
        db.session.flush()
        ids = {}
        for n, text in enumerate(texts):
            link = Link(connection_id=world["connection"], crm_type="contact", crm_id=contact.id + n,
                        erp_actor_type="Person", erp_key=f"P{n}", base={}, status="ok", last_result=text,
                        failures=1)
            db.session.add(link)
            db.session.flush()
            ids[link.id] = texts[text]
        db.session.commit()
        page = sync_issues.issue_page(sync_issues.IssueFilter(crm_type="contact"))
        assert {issue.link_id: issue.reason.key for issue in page.items} == ids
        by_id = {issue.link_id: issue.text for issue in page.items}
        assert by_id[min(ids)] == "Fake ERP refused the changes: Record locked"


def test_plain_users_cannot_open_the_inbox(user_client, world):
    assert user_client.get(INBOX).status_code == 403
    assert user_client.post(f"{INBOX}/retry", data={"row": world["acme_link"]}).status_code == 403
