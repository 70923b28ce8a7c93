"""Forms of the sync log and the manual sync triggers (Sync all now, Sync now on a connection, Resync from CRM / from
ERP connection, and their Preview)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.services.sync.runs import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS

NO_BLANK_HINT = "A blank value never replaces a value that is filled in on the other side."


class RunRequestForm(FlaskForm):
    no_blank = BooleanField("Don't overwrite with blank values", description=NO_BLANK_HINT)


# What a Preview can be of (the preview of a reconcile is the command line's ``erp reconcile --dry-run``)
PREVIEW_KINDS = [("sync", "Sync"), ("resync_from_crm", "Resync from CRM"), ("resync_from_erp", "Resync from ERP")]


class PreviewForm(RunRequestForm):
    """Preview of Sync all (no connection), Sync now on a connection, Resync from CRM / from ERP (a connection)."""

    kind = SelectField("Preview of", choices=PREVIEW_KINDS, validators=[InputRequired()])
    connection = IntegerField("Connection", validators=[Optional()])


class RetentionForm(FlaskForm):
    log_retention_days = IntegerField(
        "Keep the sync log for (days)",
        validators=[InputRequired("Enter the number of days."),
                    NumberRange(min=MIN_RETENTION_DAYS, max=MAX_RETENTION_DAYS,
                                message=f"Keep the log between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days.")])


class ChangeFilterForm(FlaskForm):
    """GET filters of the field-level change log (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    connection = SelectField("Connection", coerce=int, default=0)
    crm_type = SelectField("Record type", default="",
                           choices=[("", "Any"), ("company", "Company"), ("contact", "Contact"),
                                    ("project", "Project")])
    record = StringField("Record id or ERP key", validators=[Optional(), Length(max=120)])
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])
    only = SelectField("Show", default="", choices=[("", "All changes"), ("conflicts", "Conflicts only"),
                                                    ("errors", "Errors only")])
