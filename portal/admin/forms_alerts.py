"""The form of Settings → Sync → Alerts; the rules live in portal/services/alerts.py."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal.models.alerts import AlertChannel


class AlertRuleForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=120)])
    connection_id = SelectField("Connection", coerce=int)  # 0: every connection
    channel = RadioField("Send by", choices=[(AlertChannel.EMAIL, "E-mail"), (AlertChannel.WEBHOOK, "Webhook")],
                         default=AlertChannel.EMAIL)
    recipients = TextAreaField("Recipients", validators=[Length(max=5000)], render_kw={"rows": 3})
    webhook_url = StringField("Webhook URL", validators=[Length(max=2000)])
    webhook_secret = PasswordField("Webhook secret", validators=[Length(max=200)],
                                   render_kw={"autocomplete": "new-password"})
    on_state_change = BooleanField("When the connection turns failing, and when it recovers", default=True)
    issue_threshold = IntegerField("When open sync issues reach", validators=[
        Optional(), NumberRange(1, 1_000_000, "Enter a number from 1 to 1,000,000, or leave it blank.")])
    daily_digest = BooleanField("A daily digest", default=True)
    active = BooleanField("Active", default=True)
