"""Forms of the CRM records. They only collect and parse input (dates, ids); portal/services/crm.py decides
what is valid, and its messages are put back on these fields by the routes. What a field may hold is defined once,
in portal/services/crm_rules.py, which the import and the sync apply too: there are deliberately no WTForms
validators here (an ``Email``/``URL``/``Length`` validator would be a second definition that can drift).

Labels and maximum lengths come from ``crm_fields()`` so the forms, the mapping screen and the sync agree; the
user-defined fields an admin added are appended to each form class per request (``form_class``). A CRM
checkbox is a ``BooleanField``; a whole or decimal number is typed as text (``NumberField``, ``inputmode`` numeric
or decimal) and parsed by the service, which accepts a comma or a point as the decimal separator and refuses, with
the field's message, what is not a number.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, SelectField, StringField, TextAreaField, URLField
from wtforms.validators import Optional

from portal.models import CrmField, CrmFieldType, CrmType, crm_field, user_crm_fields
from portal.security.params import MAX_INT
from portal.services.values import number_text


def optional_id(value):
    """Select values: "" -> None, digits -> int, anything else kept so the service can refuse it (a number no id
    can be, beyond ``MAX_INT``, too: it must not reach the database)."""
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) <= MAX_INT else text


class RequiredMarker:
    """Marks a field required (label asterisk, ``required`` attribute); the service enforces the rule."""

    field_flags = {"required": True}

    def __call__(self, form, field):
        return None


def _text(crm_type: CrmType, key: str, field_class=StringField):
    return _text_field(crm_field(crm_type, key), field_class)


def _text_field(spec: CrmField, field_class=StringField):
    render_kw = {"maxlength": spec.max_length} if spec.max_length else {}
    return field_class(spec.label, validators=[RequiredMarker()] if spec.required else [], render_kw=render_kw)


def _date(crm_type: CrmType, key: str):
    return _date_field(crm_field(crm_type, key))


def _date_field(spec: CrmField):
    validators = [Optional(), RequiredMarker()] if spec.required else [Optional()]
    return DateField(spec.label, validators=validators, format="%Y-%m-%d")


class NumberField(StringField):
    """A number typed as text (``inputmode`` numeric or decimal): the text is kept as typed and parsed by the
    service (portal/services/crm.py), which refuses what is not a number with the field's message; a stored number
    is shown without needless zeros (``1500.0`` -> ``1500``)."""

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        if isinstance(self.data, int | float) and not isinstance(self.data, bool):
            try:
                return number_text(self.data)
            except ValueError:
                return str(self.data)
        return self.data if isinstance(self.data, str) else ""


def _checkbox(crm_type: CrmType, key: str):
    return BooleanField(crm_field(crm_type, key).label)


def _number(crm_type: CrmType, key: str):
    return _number_field(crm_field(crm_type, key))


def _number_field(spec: CrmField):
    mode = "numeric" if spec.type == CrmFieldType.INTEGER else "decimal"
    return NumberField(spec.label, validators=[RequiredMarker()] if spec.required else [],
                       render_kw={"inputmode": mode, "autocomplete": "off"})


def _list(crm_type: CrmType, key: str):
    return _list_field(crm_field(crm_type, key))


def _list_field(spec: CrmField):
    # Choices are filled per request from the list (portal.services.lists.choices); the service checks the
    # id belongs to the right list, so WTForms' own choice check is off.
    return SelectField(spec.label, validators=[RequiredMarker()] if spec.required else [], coerce=optional_id,
                       validate_choice=False, choices=[])


def _user_field(spec: CrmField):
    """The form field of a user-defined field."""
    if spec.type == CrmFieldType.TEXT:
        return _text_field(spec)
    if spec.type == CrmFieldType.DATE:
        return _date_field(spec)
    if spec.type == CrmFieldType.CHECKBOX:
        return BooleanField(spec.label)
    if spec.type == CrmFieldType.LIST:
        return _list_field(spec)
    return _number_field(spec)


C, P, K = CrmType.COMPANY, CrmType.PROJECT, CrmType.CONTACT


class WebAndPostalFields(FlaskForm):
    """The fields of ``WebAndPostalAddressMixin``: same labels and lengths on a company and a contact."""

    url = _text(C, "url", URLField)
    postal_address1 = _text(C, "postal_address1")
    postal_address2 = _text(C, "postal_address2")
    postal_address3 = _text(C, "postal_address3")
    postal_zip = _text(C, "postal_zip")
    postal_city = _text(C, "postal_city")
    postal_county = _text(C, "postal_county")
    postal_state = _text(C, "postal_state")


class CompanyForm(WebAndPostalFields):
    name = _text(C, "name")
    department = _text(C, "department")
    code = _text(C, "code")
    number = _text(C, "number")
    vat_no = _text(C, "vat_no")
    phone = _text(C, "phone")
    fax = _text(C, "fax")
    email = _text(C, "email", EmailField)
    street_address1 = _text(C, "street_address1")
    street_address2 = _text(C, "street_address2")
    street_address3 = _text(C, "street_address3")
    street_zip = _text(C, "street_zip")
    street_city = _text(C, "street_city")
    street_county = _text(C, "street_county")
    street_state = _text(C, "street_state")
    country_id = _list(C, "country_id")  # the web site and postal address come from WebAndPostalFields
    business_id = _list(C, "business_id")
    category_id = _list(C, "category_id")
    no_mailings = _checkbox(C, "no_mailings")
    employees = _number(C, "employees")
    credit_limit = _number(C, "credit_limit")


class ContactForm(WebAndPostalFields):
    first_name = _text(K, "first_name")
    middle_name = _text(K, "middle_name")
    last_name = _text(K, "last_name")
    title = _text(K, "title")
    position = _text(K, "position")
    number = _text(K, "number")
    email = _text(K, "email", EmailField)
    phone_direct = _text(K, "phone_direct")
    phone_mobile = _text(K, "phone_mobile")
    phone_private = _text(K, "phone_private")
    phone_other = _text(K, "phone_other")
    birth_date = _date(K, "birth_date")
    country_id = _list(K, "country_id")
    no_mailings = _checkbox(K, "no_mailings")
    # A select holding only "(none)" and the current company; the search box next to it fills it with
    # matches from /companies/options (a select of 10,000 companies would be far too big).
    company_id = SelectField("Company", coerce=optional_id, validate_choice=False, choices=[])


class ProjectForm(FlaskForm):
    name = _text(P, "name")
    number = _text(P, "number")
    description = TextAreaField(crm_field(P, "description").label, render_kw={"rows": 4})
    url = _text(P, "url", URLField)
    end_date = _date(P, "end_date")
    status_id = _list(P, "status_id")
    completed = _checkbox(P, "completed")


FORMS: dict[CrmType, type[FlaskForm]] = {C: CompanyForm, K: ContactForm, P: ProjectForm}

USER_FIELDS_SECTION = "More fields"


def form_class(crm_type: CrmType) -> type[FlaskForm]:
    """The record type's form with its user-defined fields (named by their slot) appended."""
    extra = {spec.key: _user_field(spec) for spec in user_crm_fields(crm_type)}
    if not extra:
        return FORMS[crm_type]
    return type(f"{FORMS[crm_type].__name__}WithUserFields", (FORMS[crm_type],), extra)


def sections(crm_type: CrmType) -> list[tuple[str, list[str]]]:
    """``SECTIONS`` and, when there are any, the user-defined fields as a last section."""
    keys = [spec.key for spec in user_crm_fields(crm_type)]
    return SECTIONS[crm_type] + ([(USER_FIELDS_SECTION, keys)] if keys else [])

# How the form and the detail page group the fields.
SECTIONS: dict[CrmType, list[tuple[str, list[str]]]] = {
    C: [
        ("Company", ["name", "department", "code", "number", "vat_no", "employees", "credit_limit"]),
        ("Communication", ["phone", "fax", "email", "url", "no_mailings"]),
        ("Postal address", ["postal_address1", "postal_address2", "postal_address3", "postal_zip", "postal_city",
                            "postal_county", "postal_state"]),
        ("Street address", ["street_address1", "street_address2", "street_address3", "street_zip", "street_city",
                            "street_county", "street_state"]),
        ("Classification", ["country_id", "business_id", "category_id"]),
    ],
    K: [
        ("Name", ["first_name", "middle_name", "last_name", "title", "position", "number"]),
        ("Company", ["company_id"]),
        ("Communication", ["email", "phone_direct", "phone_mobile", "phone_private", "phone_other", "url",
                           "no_mailings"]),
        ("Postal address", ["postal_address1", "postal_address2", "postal_address3", "postal_zip", "postal_city",
                            "postal_county", "postal_state", "country_id"]),
        ("Personal", ["birth_date"]),
    ],
    P: [
        ("Project", ["name", "number", "status_id", "end_date", "completed", "url", "description"]),
    ],
}


def form_data(form: FlaskForm) -> dict:
    """The submitted values by field key, for portal.services.crm."""
    return {name: field.data for name, field in form._fields.items() if name != "csrf_token"}
