"""What the Tryton connector offers and where it finds it in Tryton: the actor types, relation type names and
project states, the lists, the limits; the fields of each actor type (GetSupportedActorTypeFields), the contact
mechanisms and address keys behind them; the advanced-search map (FieldKey → where to look); the fields read from
``party.party`` and ``project.work``. Plain data, no Tryton calls."""

from __future__ import annotations

import re

from portal.connectors.protocol import field_metadata

CUSTOMER, SUPPLIER, PERSON, PROJECT = "Customer", "Supplier", "Person", "Project"
ACTOR_TYPES = (CUSTOMER, SUPPLIER, PERSON, PROJECT)
PARTY_TYPES = (CUSTOMER, SUPPLIER, PERSON)
EMPLOYEE_OF, EMPLOYER_OF = "Employee of", "Employer of"
STATE_OPENED, STATE_DONE = "opened", "done"

LIST_COUNTRIES, LIST_LANGUAGES, LIST_PROJECT_STATES = "countries", "languages", "project_states"
LISTS = (LIST_COUNTRIES, LIST_LANGUAGES, LIST_PROJECT_STATES)

MAX_RESULTS = 1000  # cap for searches without Limit (answered with a Warning when reached)
CHUNK = 500  # ids per read call
CACHE_SECONDS = 300  # lists and reference ids (categories, countries, languages …) per connection
CONTROL_CHARS = re.compile(r"[\t\n\r\v\f\x00-\x08\x0e-\x1f]")


def _f(key, name, field_type="Text", **kw):
    return field_metadata(key, name, field_type, **kw)


_COMPANY_FIELDS = [
    _f("NAME", "Name", access="Mandatory", rank=1, description="Party name"),
    _f("NUMBER1", "Party code", access="ReadOnly", rank=2, description="Tryton's party code (set by Tryton)"),
    _f("VATNO", "Tax identifier", rank=3, description="The party's tax identifier (e.g. VAT number)"),
    _f("LANGUAGE", "Language", "List", list_name=LIST_LANGUAGES, rank=4),
    _f("EMAIL", "E-mail", rank=5, description="First e-mail contact mechanism"),
    _f("PHONE", "Phone", rank=6, description="First phone contact mechanism"),
    _f("MOBILE", "Mobile", rank=7, description="First mobile contact mechanism"),
    _f("URL", "Website", rank=8, description="First website contact mechanism"),
    _f("POSTALAD1", "Street", rank=9, description="First line of the first address's street"),
    _f("POSTALAD2", "Street, more lines", rank=10, description="Further lines of the street (newline-separated)"),
    _f("POSTALZIP", "Postal code", rank=11),
    _f("POSTALCITY", "City", rank=12),
    _f("POSTALSTATE", "Subdivision", rank=13,
       description="State/region of the address: its name or ISO 3166-2 code (e.g. DE-BE); needs COUNTRY"),
    _f("COUNTRY", "Country", "List", list_name=LIST_COUNTRIES, rank=14, description="ISO 3166-1 alpha-2 code"),
    _f("CATEGORIES", "Categories", access="ReadOnly", rank=15, description="Party categories, comma-separated"),
]
FIELDS: dict[str, list[dict]] = {
    CUSTOMER: _COMPANY_FIELDS,
    SUPPLIER: _COMPANY_FIELDS,
    PERSON: [
        _f("FIRSTNAME", "First name", rank=1, description="Party name up to the last space"),
        _f("LASTNAME", "Last name", rank=2, description="Last word of the party name"),
        _f("NUMBER", "Party code", access="ReadOnly", rank=3),
        _f("EMAIL", "E-mail", rank=4),
        _f("PHONE_DIRECT", "Phone", rank=5),
        _f("PHONE_MOBILE", "Mobile", rank=6),
    ],
    PROJECT: [
        _f("NAME", "Project name", access="Mandatory", rank=1),
        _f("NUMBER", "Number", access="ReadOnly", rank=2, description="Tryton's project number"),
        _f("TEXT", "Description", rank=3),
        _f("STARTDATE", "Start date", "Date", rank=4, description="Start of the project's timesheet period"),
        _f("ENDDATE", "End date", "Date", rank=5, description="End of the project's timesheet period"),
        _f("STATE", "State", "List", list_name=LIST_PROJECT_STATES, rank=6),
    ],
}
FIELD_INDEX = {actor_type: {f["FieldKey"]: f for f in fields} for actor_type, fields in FIELDS.items()}
# Contact mechanisms per actor type: FieldKey → Tryton mechanism type.
MECHANISMS = {
    CUSTOMER: {"EMAIL": "email", "PHONE": "phone", "MOBILE": "mobile", "URL": "website"},
    SUPPLIER: {"EMAIL": "email", "PHONE": "phone", "MOBILE": "mobile", "URL": "website"},
    PERSON: {"EMAIL": "email", "PHONE_DIRECT": "phone", "PHONE_MOBILE": "mobile"},
}
ADDRESS_KEYS = ("POSTALAD1", "POSTALAD2", "POSTALZIP", "POSTALCITY", "POSTALSTATE", "COUNTRY")
MULTILINE_KEYS = {"POSTALAD2", "TEXT"}


# Advanced search: FieldKey → where to look. ("field", path) on the actor's model, ("child", o2m field, extra
# sub-domain, path in the child) through Tryton's "where"/"not where", ("name_part", FIRSTNAME|LASTNAME) is
# filtered after the query, ("status",) maps STATE keys to project.work.status ids.
def _child(o2m, path, extra=()):
    return ("child", o2m, list(extra), path)


_COMPANY_SEARCH = {
    "NAME": ("field", "name"),
    "NUMBER1": ("field", "code"),
    "VATNO": _child("identifiers", "code"),
    "EMAIL": _child("contact_mechanisms", "value", [["type", "=", "email"]]),
    "PHONE": _child("contact_mechanisms", "value", [["type", "=", "phone"]]),
    "MOBILE": _child("contact_mechanisms", "value", [["type", "=", "mobile"]]),
    "URL": _child("contact_mechanisms", "value", [["type", "=", "website"]]),
    "POSTALAD1": _child("addresses", "street"),
    "POSTALZIP": _child("addresses", "postal_code"),
    "POSTALCITY": _child("addresses", "city"),
    "POSTALSTATE": _child("addresses", "subdivision.name"),
    "COUNTRY": _child("addresses", "country.code"),
    "LANGUAGE": ("field", "lang.code"),
    "CATEGORIES": ("field", "categories.name"),
}
SEARCH: dict[str, dict[str, tuple]] = {
    CUSTOMER: _COMPANY_SEARCH,
    SUPPLIER: _COMPANY_SEARCH,
    PERSON: {
        "FIRSTNAME": ("name_part", "FIRSTNAME"),
        "LASTNAME": ("name_part", "LASTNAME"),
        "NUMBER": ("field", "code"),
        "EMAIL": _child("contact_mechanisms", "value", [["type", "=", "email"]]),
        "PHONE_DIRECT": _child("contact_mechanisms", "value", [["type", "=", "phone"]]),
        "PHONE_MOBILE": _child("contact_mechanisms", "value", [["type", "=", "mobile"]]),
    },
    PROJECT: {
        "NAME": ("field", "name"),
        "NUMBER": ("field", "number"),
        "TEXT": ("field", "comment"),
        "STATE": ("status",),
    },
}
TEXT_OPERATORS = {"=", "begins", "contains", "ends", "notbegins", "notcontains", "notends", "isnot", "between"}
NEGATIVE = {"notbegins": "begins", "notcontains": "contains", "notends": "ends", "isnot": "="}

PARTY_FIELDS = ["name", "code", "active", "lang", "categories", "addresses", "contact_mechanisms", "identifiers",
                "tax_identifier", "last_modified_at", "_timestamp"]
WORK_FIELDS = ["name", "number", "comment", "type", "status", "company", "timesheet_available",
               "timesheet_start_date", "timesheet_end_date", "last_modified_at", "_timestamp"]
