"""Forms of Settings → Sync → Issues: the inbox's filters (GET, and carried along by the actions' POSTs)."""

from flask_wtf import FlaskForm
from wtforms import SelectField

from portal.services.sync_issues import AGE_LABELS, REASONS

CRM_TYPE_CHOICES = [("", "Any record type"), ("company", "Companies"), ("contact", "Contacts"),
                    ("project", "Projects")]


class IssueFilterForm(FlaskForm):
    """Which issues the inbox lists (no CSRF: it changes nothing). ``connection`` choices are set by the view."""

    class Meta:
        csrf = False

    connection = SelectField("Connection", coerce=int, default=0)
    crm_type = SelectField("Record type", default="", choices=CRM_TYPE_CHOICES)
    reason = SelectField("Reason", default="", choices=[("", "Any reason")] + [(r.key, r.label) for r in REASONS])
    age = SelectField("Age", default="", choices=[("", "Any age")] + list(AGE_LABELS.items()))
    show = SelectField("Show", default="open", choices=[("open", "Open issues"), ("ignored", "Ignored issues")])
