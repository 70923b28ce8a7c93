from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
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
