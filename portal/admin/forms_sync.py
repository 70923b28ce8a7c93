from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Regexp

from portal.models.erp import CONFLICT_POLICY_LABELS


class ConnectorForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    url = StringField("URL of sync connector",
                      validators=[DataRequired("Enter the URL of the sync connector."), Length(max=1023)],
                      description="http(s)://host/path of the connector, or builtin:demo for the Demo ERP")
    # An HTTP header carries it: visible ASCII only (a space, a control character or a letter beyond Latin-1
    # cannot be sent and would fail every call).
    token = PasswordField("Access token (optional)",
                          validators=[Length(max=500),
                                      Regexp(r"^\s*[\x21-\x7e]*\s*$", message="The token may hold visible ASCII "
                                             "characters only (letters, digits and punctuation; no spaces).")],
                          description="Sent as a bearer token. Leave blank to keep the stored one (with a new URL, "
                                      "type it again: a stored token is never sent to a new address).")
    clear_token = BooleanField("Remove the stored token")


class IntervalForm(FlaskForm):
    interval_seconds = IntegerField("Sync interval (seconds)",
                                    validators=[InputRequired("Enter the interval in seconds."),
                                                NumberRange(min=60, max=366 * 24 * 3600,
                                                            message="The interval must be at least 60 seconds "
                                                                    "and at most a year.")])


class ReconcileForm(FlaskForm):
    """When the reconcile pass runs (portal.services.sync.reconcile): how often, and the hour its slots start."""

    every_hours = SelectField("Reconcile", coerce=int, choices=[],
                              validators=[InputRequired("Choose how often the reconcile runs.")])
    hour = SelectField("At (UTC)", coerce=int, choices=[(h, f"{h:02d}:00") for h in range(24)],
                       validators=[InputRequired("Choose the hour.")])

    def __init__(self, *args, **kwargs):
        from portal.services.sync.reconcile import EVERY_CHOICES

        super().__init__(*args, **kwargs)
        self.every_hours.choices = list(EVERY_CHOICES.items())


class ConnectionForm(FlaskForm):
    """Static part of the Define/Configure ERP connection form; config fields are rendered from the
    connector's GetConfigData and parsed by services.connections.collect_config."""

    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    connector_id = SelectField("ERP sync connector", coerce=int)
    description = TextAreaField("Description", validators=[Length(max=2000)])
    scope = SelectField("Scope", choices=[("everyone", "Everyone"), ("specific", "Specific users and groups")],
                        default="everyone")
    all_can_create = BooleanField("Everyone may also create actors in the ERP", default=True)
    conflict_policy = SelectField("When both sides changed a field", choices=list(CONFLICT_POLICY_LABELS.items()))
    test_token = HiddenField()
