"""Shared worlds for the browser tests: databases set up directly in the live server's app, so a test can start on
the screen it is about."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

BAD_EMAIL = "accounts at nordlys"


def history(connection_id: int) -> None:
    """A fortnight of earlier runs and field changes, so the chart has something to show (added before any real
    run: the health block takes the run with the largest id as the latest)."""
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import SyncChange, SyncRun

    now = utcnow()
    for days_ago in range(13, 0, -1):
        moment = now - timedelta(days=days_ago)
        for n in range(2 + days_ago % 3):
            at = moment + timedelta(hours=n)
            status = "failed" if (days_ago, n) == (9, 0) else "succeeded"
            run = SyncRun(connection_id=connection_id, kind="sync", trigger="schedule", status=status,
                          created_at=at, started_at=at, finished_at=at + timedelta(seconds=3),
                          error="Demo ERP did not answer." if status == "failed" else "")
            db.session.add(run)
            db.session.flush()
            for k in range((days_ago * 7 + n) % 5):
                db.session.add(SyncChange(run_id=run.id, connection_id=connection_id, crm_type="company", crm_id=1,
                                          direction="to_crm" if k % 2 else "to_erp", erp_field_key="PHONE",
                                          crm_field_key="phone", old_value="1", new_value="2",
                                          conflict=k == 3, at=at))
    db.session.commit()


def sync_issue_world(app) -> dict:
    """A Demo ERP connection (Customer ↔ Company: name, phone, e-mail both ways) with three linked companies, then
    the ERP gives one an e-mail the CRM refuses and deletes another's customer, and a sync runs."""
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, Connector, Link, SyncSettings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for
    from portal.services.sync import engine, runs
    from portal.services.sync_settings import ensure_in_priority

    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        settings.next_due_at = utcnow() + timedelta(hours=1)
        db.session.commit()
        connector = db.session.scalar(select(Connector).where(Connector.url == "builtin:demo"))
        connection = Connection(connector=connector, name="Demo ERP", guid="0b5e7c1a-2d3f-4a6b-8c9d-0e1f2a3b4c5d",
                                active=True, last_test_ok=True, config_values={"CompanyDb": "demo"})
        db.session.add(connection)
        db.session.flush()
        client_for(connector).save_connection(connection.guid, {"CompanyDb": "demo"})
        apply_catalogue(connection, fetch_catalogue(connector, connection.guid))
        config = connection.actor_type("Customer")
        config.is_active = True
        for erp_field in config.fields:
            wanted = {"NAME": "name", "PHONE": "phone", "EMAIL": "email"}.get(erp_field.field_key)
            erp_field.crm_field = wanted
            erp_field.sync_to_crm = erp_field.sync_to_erp = erp_field.show_in_gui = wanted is not None
        ensure_in_priority(connection.id)
        db.session.commit()
        connection_id = connection.id
        history(connection_id)
        demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
        _total, customers = demo.browse("Customer", limit=3)
        companies = db.session.scalars(select(Company).order_by(Company.id).limit(3)).all()
        for company, actor in zip(companies, customers, strict=True):
            db.session.add(Link(connection_id=connection_id, crm_type="company", crm_id=company.id,
                                erp_actor_type="Customer", erp_key=actor["ErpKey"], base={},
                                erp_last_modified=actor["LastModified"], status="ok"))
        connection = db.session.get(Connection, connection_id)
        connection.cursors = {"Customer": max(a["LastModified"] for a in demo.browse("Customer", limit=500)[1])}
        db.session.commit()
        link_ids = db.session.scalars(select(Link.id).where(Link.connection_id == connection_id)
                                      .order_by(Link.id)).all()
        for link_id in link_ids:
            assert engine.sync_record(link_id).ok  # the first sync agrees on a base
        bad, gone = customers[0]["ErpKey"], customers[1]["ErpKey"]
        demo.update_fields("Customer", bad, {"EMAIL": BAD_EMAIL})
        demo.delete_actor("Customer", gone)
        db.session.get(Company, companies[1].id).phone = "+47 22 00 00 00"  # the run reads its customer: gone
        db.session.commit()
        run, _created = runs.request_run(connection_id, kind="sync", trigger="manual", requested_by="test")
        assert engine.execute_run(run.id).status == "partial"
        return {"connection": connection_id, "company": companies[0].id, "company_name": companies[0].name,
                "bad": bad, "broken_company": companies[1].name}


def save_demo_connection(name: str = "Demo ERP", scope=None):
    """A connection on the built-in Demo ERP connector saved as the Define dialog saves it after a passed Test
    (fields read and pre-mapped, inactive). Call inside the live server's app context; returns the Connection."""
    from portal.extensions import db
    from portal.models import Connector
    from portal.services import connections

    connector = db.session.scalar(select(Connector).where(Connector.url == "builtin:demo"))
    values = {"CompanyDb": "DEMO", "ApiUser": None, "ApiPassword": None, "Currency": "EUR",
              "SimulateOffline": False}
    return connections.save_connection(
        None, connector=connector, name=name, description="", values=values,
        fields=connections.config_fields(connector), scope=scope or connections.Scope(), conflict_policy="priority",
        test_token_value=connections.test_token(connector.id, values))


def free_company(app) -> int:
    """The first company no connection links to (for Connect and Create)."""
    from portal.extensions import db
    from portal.models import Company, Link

    with app.app_context():
        linked = set(db.session.scalars(select(Link.crm_id).where(Link.crm_type == "company")))
        return db.session.scalar(select(Company.id).where(Company.id.not_in(linked)).order_by(Company.id))
