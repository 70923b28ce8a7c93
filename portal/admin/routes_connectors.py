"""Sync connectors grid: add (with a probe of the URL), configure, soft delete and restore."""

from __future__ import annotations

from flask import render_template, request, url_for

from portal.admin import bp
from portal.admin.forms_sync import ConnectorForm
from portal.htmx import redirect_for, toast
from portal.models import Connector
from portal.services import connectors as connector_service
from portal.services.connectors import ServiceError
from portal.web import audit_ctx, get_or_404, render_form


def _form_page(form, connector=None):
    return render_form("admin/connectors/form.html", "admin/connectors/_form.html", form, connector=connector)


@bp.route("/connectors/new", methods=["GET", "POST"])
def connector_new():
    form = ConnectorForm()
    if form.validate_on_submit():
        try:
            connector = connector_service.save_connector(None, name=form.name.data, url=form.url.data,
                                                         token=form.token.data, **audit_ctx())
        except ServiceError as exc:
            getattr(form, exc.field or "url").errors.append(exc.message)
        else:
            toast("success", f"Sync connector {connector.name} added.")
            return redirect_for(url_for("admin.sync"))
    return _form_page(form)


@bp.route("/connectors/<int:connector_id>/edit", methods=["GET", "POST"])
def connector_edit(connector_id: int):
    connector = get_or_404(Connector, connector_id)
    form = ConnectorForm(obj=connector if request.method == "GET" else None)
    if request.method == "GET":
        form.token.data = ""
    if form.validate_on_submit():
        moved = connector_service.url_changed(connector.url, form.url.data)
        try:
            connector_service.save_connector(connector, name=form.name.data, url=form.url.data,
                                             token=form.token.data, clear_token=form.clear_token.data,
                                             **audit_ctx())
        except ServiceError as exc:
            getattr(form, exc.field or "url").errors.append(exc.message)
        else:
            cleared = [c.name for c in connector_service.connections_needing_secrets(connector)] if moved else []
            if cleared:
                toast("warning", f"Sync connector {connector.name} saved. Its address changed, so the stored "
                                 f"passwords of {', '.join(cleared)} were cleared and those connections are "
                                 "inactive: enter the passwords again in Configure, test and activate.")
            else:
                toast("success", f"Sync connector {connector.name} saved.")
            return redirect_for(url_for("admin.sync"))
    return _form_page(form, connector)


@bp.route("/connectors/<int:connector_id>/delete", methods=["POST"])
def connector_delete(connector_id: int):
    connector = get_or_404(Connector, connector_id)
    try:
        connector_service.delete_connector(connector, **audit_ctx())
    except ServiceError as exc:
        toast("error", exc.message)
        return render_template("admin/sync/_connector_row.html", connector=connector), 409
    toast("success", f"Sync connector {connector.name} deleted. Tick “Show deleted” to restore it.")
    return render_template("admin/sync/_connector_row.html", connector=connector, hide_deleted=True)


@bp.route("/connectors/<int:connector_id>/restore", methods=["POST"])
def connector_restore(connector_id: int):
    connector = get_or_404(Connector, connector_id)
    connector_service.restore_connector(connector, **audit_ctx())
    toast("success", f"Sync connector {connector.name} restored.")
    return render_template("admin/sync/_connector_row.html", connector=connector)
