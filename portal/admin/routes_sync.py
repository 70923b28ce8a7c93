"""Settings → Quote/Sync → Sync tab: automatic sync On/Off and interval, the connector and connection grids,
the selected connection's actions and summary, and Set sync priority."""

from __future__ import annotations

from flask import render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_sync import IntervalForm, ReconcileForm
from portal.database import utcnow
from portal.extensions import db
from portal.htmx import redirect_for, toast, wants_partial
from portal.models import Connection, Connector
from portal.services import sync_health
from portal.services import sync_settings as settings_service
from portal.services.bootstrap import sync_settings
from portal.services.connectors import ServiceError
from portal.web import audit_ctx


def connection_summary(connection: Connection) -> list[dict]:
    """One row per supported actor type: what is mapped and which defaults apply (ErpSyncActorSummary)."""
    rows = []
    for config in connection.actor_types:
        mapped = [f for f in config.fields if f.crm_field and (f.sync_to_crm or f.sync_to_erp)]
        defaults = [f for f in config.fields if f.has_default or f.ask_user]
        rows.append({
            "actor_type": config.erp_actor_type, "crm_type": config.crm_type, "active": config.is_active,
            "supported": config.supported, "mappings": ", ".join(f.display_name for f in mapped) or "—",
            "defaults": ", ".join(f.display_name for f in defaults) or "—",
            "premapped": sum(1 for f in config.fields if f.crm_field and not (f.sync_to_crm or f.sync_to_erp)),
        })
    return rows


@bp.route("/")
def index():
    return redirect_for(url_for("admin.sync"))


@bp.route("/sync")
def sync():
    show_deleted_connectors = request.args.get("deleted_connectors") == "1"
    show_deleted_connections = request.args.get("deleted_connections") == "1"
    connector_query = select(Connector).order_by(Connector.name)
    if not show_deleted_connectors:
        connector_query = connector_query.where(Connector.deleted.is_(False))
    connection_query = select(Connection).order_by(Connection.name)
    if not show_deleted_connections:
        connection_query = connection_query.where(Connection.deleted.is_(False))
    connections = db.session.scalars(connection_query).all()
    selected = None
    selected_id = request.args.get("connection", type=int)
    if selected_id:
        selected = db.session.get(Connection, selected_id)
    settings = sync_settings()
    db.session.commit()
    context = dict(
        **_health_context(),
        settings=settings, interval_form=IntervalForm(interval_seconds=settings.interval_seconds),
        **_reconcile_context(settings),
        connectors=db.session.scalars(connector_query).all(), connections=connections, selected=selected,
        summary=connection_summary(selected) if selected else [],
        show_deleted_connectors=show_deleted_connectors, show_deleted_connections=show_deleted_connections,
    )
    section = request.args.get("section")
    if wants_partial() and section in ("connectors", "connections", "health"):
        return render_template(f"admin/sync/_{section}.html", **context)
    return render_template("admin/sync/index.html", **context)


def _health_context() -> dict:
    """The health block (admin/sync/_health.html): every connection's state, facts and 14-day chart."""
    now = utcnow()
    return {"health": sync_health.overview(now=now), "age": lambda moment: sync_health.ago(now - moment)}


@bp.route("/sync/auto", methods=["POST"])
def sync_auto():
    on = request.form.get("on") == "1"
    settings = settings_service.set_auto_sync(on, **audit_ctx())
    toast("success" if on else "warning", "Automatic sync is on." if on else "Automatic sync is turned off.")
    return render_template("admin/sync/_auto.html", settings=settings,
                           interval_form=IntervalForm(interval_seconds=settings.interval_seconds))


@bp.route("/sync/interval", methods=["POST"])
def sync_interval():
    form = IntervalForm()
    settings = sync_settings()
    if form.validate_on_submit():
        try:
            settings = settings_service.set_interval(form.interval_seconds.data, **audit_ctx())
        except ServiceError as exc:
            form.interval_seconds.errors.append(exc.message)
        else:
            toast("success", f"Sync interval set to {settings.interval_seconds} seconds.")
            return render_template("admin/sync/_auto.html", settings=settings, interval_form=form)
    db.session.rollback()
    return render_template("admin/sync/_auto.html", settings=settings, interval_form=form), 422


def _reconcile_context(settings, form: ReconcileForm | None = None) -> dict:
    """The Reconcile setting of the Sync tab (admin/sync/_reconcile.html)."""
    from portal.services.sync import reconcile

    form = form or ReconcileForm(every_hours=settings.reconcile_every_hours, hour=settings.reconcile_hour)
    context = {"reconcile_form": form, "reconcile_text": reconcile.schedule_text(settings),
               "reconcile_next": reconcile.next_due_at(settings)}
    db.session.commit()
    return context


@bp.route("/sync/reconcile", methods=["POST"])
def sync_reconcile():
    """Save how often and at which hour the reconcile runs; 422 with the errors on bad input."""
    from portal.services.sync import reconcile

    form = ReconcileForm()
    settings = sync_settings()
    if form.validate_on_submit():
        try:
            settings = reconcile.set_schedule(form.every_hours.data, form.hour.data, **audit_ctx())
        except ServiceError as exc:
            getattr(form, exc.field if exc.field in ("every_hours", "hour") else "every_hours").errors.append(
                exc.message)
        else:
            text = reconcile.schedule_text(settings)
            toast("success" if settings.reconcile_every_hours else "warning",
                  f"Reconcile: {text}." if settings.reconcile_every_hours else "The scheduled reconcile is off.")
            return render_template("admin/sync/_reconcile.html", settings=settings,
                                   **_reconcile_context(settings, form))
    db.session.rollback()
    settings = sync_settings()
    return render_template("admin/sync/_reconcile.html", settings=settings,
                           **_reconcile_context(settings, form)), 422


@bp.route("/sync/priority")
def sync_priority():
    entries = settings_service.priority_entries()
    db.session.commit()
    template = "admin/sync/_priority.html" if wants_partial() else "admin/sync/priority.html"
    return render_template(template, entries=entries)


@bp.route("/sync/priority/<int:entry_id>/<any(up, down):direction>", methods=["POST"])
def sync_priority_move(entry_id: int, direction: str):
    try:
        entries = settings_service.move_priority(entry_id, -1 if direction == "up" else 1, **audit_ctx())
    except ServiceError as exc:
        toast("error", exc.message)
        return render_template("admin/sync/_priority.html", entries=settings_service.priority_entries()), 404
    return render_template("admin/sync/_priority.html", entries=entries)
