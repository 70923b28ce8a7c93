"""Forms of the Demo ERP pages, built from the connector's own field catalogue.

The form only parses input; the Demo ERP (``DemoErpConnector.update_fields`` / ``create``) decides what is
valid, and its messages are put back on the fields by the routes. ReadOnly fields are not in the form: the
pages show them as text ("maintained by the ERP").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    FloatField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from portal.connectors.builtin.demo import FIELDS

LONG_TEXT = {"NOTES", "TEXT"}


class ConfirmForm(FlaskForm):
    """A POST that only needs its CSRF token (delete, mark as changed)."""


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _field(meta: dict, list_items: Callable[[str], Mapping[str, str]]):
    key, label, field_type = meta["FieldKey"], meta["DisplayName"], meta["FieldType"]
    mandatory = meta["Access"] == "Mandatory"
    presence = DataRequired(message=f"{label} is mandatory.") if mandatory else Optional()
    description = meta["DisplayDescription"]
    if field_type == "Checkbox":
        return BooleanField(label, description=description)
    if field_type == "Integer":
        return IntegerField(label, validators=[presence], description=description)
    if field_type == "Double":
        return FloatField(label, validators=[presence], description=description, render_kw={"step": "any"})
    if field_type == "Date":
        return DateField(label, validators=[presence], format="%Y-%m-%d", description=description)
    if field_type == "List":
        choices = [("", "—")] + list(list_items(meta["ListName"]).items())
        return SelectField(label, validators=[presence], choices=choices, description=description)
    validators = [presence]
    render_kw = {}
    if meta["MaxLength"]:
        validators.append(Length(max=meta["MaxLength"]))
        render_kw["maxlength"] = meta["MaxLength"]
    field_class = TextAreaField if key in LONG_TEXT else EmailField if key == "EMAIL" else StringField
    return field_class(label, validators=validators, filters=[_strip], description=description,
                       render_kw=render_kw)


def editable_fields(actor_type: str) -> list[dict]:
    return [meta for meta in FIELDS[actor_type] if meta["Access"] != "ReadOnly"]


def actor_form(actor_type: str, list_items: Callable[[str], Mapping[str, str]], values: Mapping | None = None,
               **kwargs) -> FlaskForm:
    """A form with one input per editable field of ``actor_type``, filled from FieldValues ``values``."""

    class ActorForm(FlaskForm):
        pass

    for meta in editable_fields(actor_type):
        setattr(ActorForm, meta["FieldKey"], _field(meta, list_items))
    data = None
    if values is not None:
        data = {}
        for meta in editable_fields(actor_type):
            value = values.get(meta["FieldKey"])
            if meta["FieldType"] == "Date" and value:
                value = date.fromisoformat(str(value)[:10])
            elif meta["FieldType"] == "List":
                value = value or ""
            data[meta["FieldKey"]] = value
    return ActorForm(data=data, **kwargs)


def default_values(actor_type: str) -> dict:
    """FieldValues for a new record from the catalogue's DefaultValue."""
    values = {}
    for meta in editable_fields(actor_type):
        default = meta["DefaultValue"]
        if meta["FieldType"] == "Checkbox":
            values[meta["FieldKey"]] = default.strip().lower() in {"1", "true", "yes", "on"}
        elif default:
            values[meta["FieldKey"]] = default
    return values


def form_values(form: FlaskForm, actor_type: str) -> dict:
    """FieldValues (JSON-native, None = blank) from a validated form."""
    values = {}
    for meta in editable_fields(actor_type):
        data = form[meta["FieldKey"]].data
        if meta["FieldType"] == "Checkbox":
            data = bool(data)
        elif isinstance(data, date):
            data = data.isoformat()
        elif data == "":
            data = None
        values[meta["FieldKey"]] = data
    return values
