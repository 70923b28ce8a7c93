from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, EqualTo, Length

from portal.security.password_policy import MAX_LENGTH, MIN_LENGTH
from portal.services.multilang import LANGUAGES


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = StringField()  # rendered hidden


class PasswordChangeForm(FlaskForm):
    """A user changing their own password (the policy is checked by portal/services/users.py)."""

    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=MAX_LENGTH)])
    new_password = PasswordField("New password", validators=[
        DataRequired("Enter a new password."), Length(max=MAX_LENGTH)],
        render_kw={"autocomplete": "new-password", "minlength": MIN_LENGTH})
    confirm_password = PasswordField("Repeat the new password", validators=[
        DataRequired("Repeat the new password."), EqualTo("new_password", "The two new passwords differ.")],
        render_kw={"autocomplete": "new-password"})


class LanguageForm(FlaskForm):
    """The language connector texts are shown in (SuperOffice's multi-language texts); "" = from the browser."""

    language = SelectField("Language of ERP texts", choices=[("", "From the browser"), *LANGUAGES],
                           validate_choice=True)


class EmptyForm(FlaskForm):
    """CSRF only, for one-button POST actions."""


class ApiTokenForm(FlaskForm):
    """A personal API token of the automation API (portal/api/tokens.py checks the rules again)."""

    name = StringField("Name", validators=[DataRequired("Give the token a name."), Length(max=80)],
                       render_kw={"placeholder": "e.g. nightly resync script"})
    scopes = SelectMultipleField("Scopes", choices=[("read", "read — connections, runs, change log"),
                                                    ("sync", "sync — queue syncs and resyncs (admins)"),
                                                    ("link", "link — connect and disconnect records")],
                                 validators=[DataRequired("Choose at least one scope.")],
                                 option_widget=widgets.CheckboxInput(), widget=widgets.ListWidget(prefix_label=False))
    days = SelectField("Expires after", choices=[("30", "30 days"), ("90", "90 days"), ("180", "180 days"),
                                                 ("365", "1 year")], default="90", validate_choice=True)
