"""Forms of Settings → Fields (user-defined fields). Rules and messages are portal/services/user_fields.py's."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField

from portal.services.user_fields import LABEL_MAX_LENGTH, TYPE_LABELS, list_labels


class FieldEditForm(FlaskForm):
    label = StringField("Label", render_kw={"maxlength": LABEL_MAX_LENGTH, "autocomplete": "off"})
    required = BooleanField("Required: a record cannot be saved without a value")
    show_in_list = BooleanField("Show as a column in the list and search results")


class FieldAddForm(FieldEditForm):
    # the service refuses anything outside the choices with its own message
    field_type = SelectField("Type", choices=list(TYPE_LABELS.items()), validate_choice=False)
    list_name = SelectField("List (for a list field)", choices=[("", "(not a list)")] + list(list_labels().items()),
                            validate_choice=False)
