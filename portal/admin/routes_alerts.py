"""Settings → Sync → Alerts: who is told when a connection fails or recovers, when issues pile up, and daily."""

from __future__ import annotations

from flask import current_app, render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_alerts import AlertRuleForm
from portal.extensions import db
from portal.htmx import redirect_for, toast
from portal.models import Connection
from portal.models.alerts import AlertRule
from portal.services import alerts
from portal.web import audit_ctx, get_or_404, render_form


def _connection_choices() -> list[tuple[int, str]]:
    connections = db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                     .order_by(Connection.name))
    return [(0, "Every connection")] + [(c.id, c.name) for c in connections]


def _render(form: AlertRuleForm, rule: AlertRule | None):
    action = url_for("admin.alert_edit", rule_id=rule.id) if rule else url_for("admin.alert_create")
    return render_form("admin/alerts/form.html", "admin/alerts/_form.html", form, rule=rule, action=action,
                       smtp_set=bool(current_app.config.get("SMTP_URL")))


def _save(form: AlertRuleForm, rule: AlertRule | None):
    form.connection_id.choices = _connection_choices()
    if form.validate_on_submit():
        values = alerts.RuleInput(
            name=form.name.data or "", connection_id=form.connection_id.data or None, channel=form.channel.data,
            recipients=form.recipients.data or "", webhook_url=form.webhook_url.data or "",
            webhook_secret=form.webhook_secret.data or "", on_state_change=form.on_state_change.data,
            issue_threshold=form.issue_threshold.data, daily_digest=form.daily_digest.data,
            active=form.active.data)
        try:
            saved = alerts.save_rule(rule, values, **audit_ctx())
        except alerts.RuleError as exc:
            getattr(form, exc.field).errors = [str(exc)]
        else:
            toast("success", f"Alert rule {saved.name} saved.")
            return redirect_for(url_for("admin.alert_list"))
    return _render(form, rule)


@bp.route("/sync/alerts")
def alert_list():
    return render_template("admin/alerts/index.html", rules=alerts.rules(),
                           smtp_set=bool(current_app.config.get("SMTP_URL")),
                           digest_hour=current_app.config.get("ALERT_DIGEST_HOUR", 7))


@bp.route("/sync/alerts/new", methods=["GET", "POST"])
def alert_create():
    return _save(AlertRuleForm(), None)


@bp.route("/sync/alerts/<int:rule_id>/edit", methods=["GET", "POST"])
def alert_edit(rule_id: int):
    rule = get_or_404(AlertRule, rule_id)
    form = AlertRuleForm(obj=rule) if request.method == "GET" else AlertRuleForm()
    if request.method == "GET":
        form.connection_id.data = rule.connection_id or 0
        form.webhook_secret.data = ""
    return _save(form, rule)


@bp.route("/sync/alerts/<int:rule_id>/delete", methods=["POST"])
def alert_delete(rule_id: int):
    rule = get_or_404(AlertRule, rule_id)
    name = rule.name
    alerts.delete_rule(rule, **audit_ctx())
    toast("success", f"Alert rule {name} deleted.")
    return redirect_for(url_for("admin.alert_list"))


@bp.route("/sync/alerts/<int:rule_id>/test", methods=["POST"])
def alert_test(rule_id: int):
    rule = get_or_404(AlertRule, rule_id)
    error = alerts.send_test(rule, **audit_ctx())
    if error:
        toast("error", f"The test alert of {rule.name} was not delivered: {error}")
    else:
        toast("success", f"Test alert of {rule.name} sent.")
    return render_template("admin/alerts/_rule_row.html", rule=rule, test_error=error, tested=True)
