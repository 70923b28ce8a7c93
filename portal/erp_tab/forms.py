"""Forms of the ERP tab dialogs.

The ask-user fields are configured per actor type by the admin, so their form classes are built at run time:
one input per field, typed after the ERP field (text, number, date, yes/no, or a select of the ERP list), with
``DataRequired`` on mandatory ones and the ERP's MaxLength. Input names are ``ask_<ErpField.id>`` so they stay
stable when the admin reorders fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.i18n import localize
from portal.models import ErpField, FieldType
from portal.services.erp_tab import value_text
from portal.services.values import ConversionError, parse_input


class ActionForm(FlaskForm):
    """No inputs: only the CSRF token (disconnect, Sync now)."""


class LinkForm(FlaskForm):
    """The compare step: which actor, and the stamps that prove nothing changed since it was shown."""

    erp_key = HiddenField()
    erp_stamp = HiddenField()
    crm_stamp = HiddenField()


class CreateForm(FlaskForm):
    """Create in ERP: the dialog's nonce (the idempotency key is derived from it) and the proof of the search the
    Create came from (portal/erp_tab/search_proof.py)."""

    nonce = HiddenField()
    proof = HiddenField()


class _Parses:
    """Validator: the text must parse as a value of the ERP field type."""

    def __init__(self, field_type: str, label: str):
        self.field_type = field_type
        self.label = label

    def __call__(self, form, field) -> None:
        data = field.data
        if not isinstance(data, str) or not data.strip():
            return
        try:
            parse_input(self.field_type, data.strip())
        except ConversionError as exc:
            raise ValidationError(f"{exc}.") from exc


def _answer_field(erp_field: ErpField, items: Mapping[str, str], current: object):
    label = localize(erp_field.display_name or erp_field.field_key)  # connector texts in the user's language
    description = localize(erp_field.description or "")
    field_type = erp_field.field_type
    if field_type == FieldType.CHECKBOX:
        return BooleanField(label, description=description)
    required = [DataRequired(message=f"{label} is required.")] if erp_field.mandatory else [Optional()]
    if field_type == FieldType.LIST:
        choices = [("", "(none)")] + [(str(key), localize(text)) for key, text in items.items()]
        if current not in (None, "") and str(current) not in items:
            choices.append((str(current), str(current)))
        return SelectField(label, choices=choices, validators=required, description=description)
    validators = list(required)
    if erp_field.max_length and field_type in (FieldType.TEXT, FieldType.PASSWORD):
        validators.append(Length(max=erp_field.max_length,
                                 message=f"{label} can be at most {erp_field.max_length} characters."))
    validators.append(_Parses(field_type, label))
    render = {}
    if field_type == FieldType.INTEGER:
        render = {"inputmode": "numeric"}
    elif field_type == FieldType.DOUBLE:
        render = {"inputmode": "decimal"}
    elif field_type == FieldType.DATE:
        render = {"type": "date"}
    if field_type == FieldType.PASSWORD:
        return PasswordField(label, validators=validators, description=description, render_kw=render)
    return StringField(label, validators=validators, description=description, render_kw=render)


def with_answers(base: type[FlaskForm], ask: Iterable[ErpField], lists: Mapping[str, Mapping[str, str]],
                 prefill: Mapping[str, object] | None = None) -> type[FlaskForm]:
    """A subclass of ``base`` with one input per ask-user field."""
    prefill = prefill or {}

    class AnswersForm(base):
        pass

    for erp_field in ask:
        items = lists.get(erp_field.list_name, {}) if erp_field.field_type == FieldType.LIST else {}
        setattr(AnswersForm, f"ask_{erp_field.id}", _answer_field(erp_field, items, prefill.get(erp_field.field_key)))
    return AnswersForm


def answers_form(base: type[FlaskForm], ask: list[ErpField], lists: Mapping[str, Mapping[str, str]],
                 prefill: Mapping[str, object] | None = None, *, submitted: bool, **data) -> FlaskForm:
    """The form, either filled from the request (``submitted``) or prefilled for display."""
    cls = with_answers(base, ask, lists, prefill)
    if submitted:
        return cls()
    values = dict(data)
    for erp_field in ask:
        value = (prefill or {}).get(erp_field.field_key)
        name = f"ask_{erp_field.id}"
        values[name] = bool(value) if erp_field.field_type == FieldType.CHECKBOX else value_text(
            erp_field.field_type, value)
    return cls(formdata=None, data=values)


def answers_of(form: FlaskForm, ask: Iterable[ErpField]) -> dict[str, object]:
    """The validated answers as normalized ERP values, by ERP field key (blank -> None)."""
    answers: dict[str, object] = {}
    for erp_field in ask:
        data = form[f"ask_{erp_field.id}"].data
        if erp_field.field_type == FieldType.CHECKBOX:
            answers[erp_field.field_key] = bool(data)
            continue
        text = data.strip() if isinstance(data, str) and erp_field.field_type != FieldType.PASSWORD else data
        answers[erp_field.field_key] = parse_input(erp_field.field_type, text or "")
    return answers


def apply_errors(form: FlaskForm, errors: Mapping[str, str]) -> list[str]:
    """Put service errors next to their inputs; returns the ones that have no input (shown above the form)."""
    loose = []
    for name, message in errors.items():
        if name in form:
            form[name].errors = [*form[name].errors, message]
        else:
            loose.append(message)
    return loose
