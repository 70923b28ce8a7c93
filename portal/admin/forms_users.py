"""Forms of the Users and Groups settings screens. The rules (unique e-mail, password length, last admin)
live in portal/services/users.py; these only collect input."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length

from portal.models import Role
from portal.services.users import MIN_PASSWORD_LENGTH


class UserForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired("Enter an e-mail address."), Length(max=254)],
                       render_kw={"autocomplete": "off"})
    name = StringField("Name", validators=[Length(max=120)])
    role = SelectField("Role", choices=[(Role.USER.value, "User"), (Role.ADMIN.value, "Admin")],
                       default=Role.USER.value)
    is_active = BooleanField("Active (may sign in)", default=True)
    erp_licence = BooleanField("ERP Sync licence")
    # Rendered as a list of checkboxes; choices are the groups, filled per request.
    groups = SelectMultipleField("Groups", coerce=int, choices=[])
    password = PasswordField("Password", validators=[Length(max=200)],
                             render_kw={"autocomplete": "new-password", "minlength": MIN_PASSWORD_LENGTH})


class GroupForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("A group needs a name."), Length(max=120)])
    description = TextAreaField("Description", validators=[Length(max=500)], render_kw={"rows": 2})
    members = SelectMultipleField("Members", coerce=int, choices=[])
