"""What the Demo ERP holds: its actor types, how their keys and numbers are made, and the field catalogue it
answers (GetSupportedActorTypeFields, GetSearchableFields, GetConfigData). Plain data, no storage."""

from __future__ import annotations

from portal.connectors.protocol import field_metadata

ACTOR_TYPES = ("Customer", "Supplier", "Person", "Project")
PARENT_TYPES = ("Customer", "Supplier")
# ErpKey = prefix + sequence number; the numbers of different types never meet, so keys are unique overall.
KEY_PREFIX = {"Customer": ("C", 10000), "Supplier": ("S", 20000), "Person": ("P", 30000), "Project": ("PR", 40000)}
# The number the ERP assigns (ReadOnly field), derived from the key's sequence number.
NUMBER_FIELD = {"Customer": "NUMBER1", "Supplier": "NUMBER1", "Project": "NUMBER"}
# Fields SearchActors matches (case-insensitive "contains").
SEARCH_TEXT_FIELDS = {
    "Customer": ("NAME", "NUMBER1"),
    "Supplier": ("NAME", "NUMBER1"),
    "Person": ("FIRSTNAME", "MIDDLENAME", "LASTNAME", "EMAIL"),
    "Project": ("NAME", "NUMBER"),
}


# ---------------------------------------------------------------------------------------------------------------
# Field catalogue (GetSupportedActorTypeFields). Keys follow spec §3.5 so the portal pre-maps them automatically.


def _company_fields(actor_type: str) -> list[dict]:
    noun = "customer" if actor_type == "Customer" else "supplier"
    fields = [
        field_metadata("NAME", "Name", max_length=100, access="Mandatory", rank=10,
                       description=f"The {noun}'s registered name"),
        field_metadata("NUMBER1", f"{noun.capitalize()} number", max_length=20, access="ReadOnly", rank=20,
                       description="Assigned by the ERP when the record is created"),
        field_metadata("DEPARTMENT", "Department", max_length=60, rank=30),
        field_metadata("VATNO", "VAT number", max_length=30, rank=40),
        field_metadata("PHONE", "Phone", max_length=30, rank=50),
        field_metadata("FAX", "Fax", max_length=30, rank=60),
        field_metadata("EMAIL", "E-mail", max_length=254, rank=70),
        field_metadata("URL", "Web site", max_length=254, rank=80),
        field_metadata("POSTALAD1", "Postal address 1", max_length=80, rank=90),
        field_metadata("POSTALAD2", "Postal address 2", max_length=80, rank=100),
        field_metadata("POSTALAD3", "Postal address 3", max_length=80, rank=110),
        field_metadata("POSTALZIP", "Postal code", max_length=15, rank=120),
        field_metadata("POSTALCITY", "City", max_length=60, rank=130),
        field_metadata("STREETAD1", "Street address", max_length=80, rank=140),
        field_metadata("STREETZIP", "Street postal code", max_length=15, rank=150),
        field_metadata("STREETCITY", "Street city", max_length=60, rank=160),
        field_metadata("COUNTRY", "Country", "List", list_name="countries", rank=170),
        field_metadata("CURRENCY", "Currency", "List", list_name="currencies", default="EUR", rank=200,
                       description="Currency the ERP invoices in"),
        field_metadata("PAYMENTTERMS", "Payment terms", "List", list_name="paymentterms", default="NET30",
                       rank=210),
    ]
    if actor_type == "Customer":
        fields.append(field_metadata("CUSTOMERGROUP", "Customer group", "List", list_name="customergroups",
                                     rank=220, description="Price and discount group"))
    fields += [
        field_metadata("CREDITLIMIT", "Credit limit", "Double", rank=230,
                       description="Largest open balance allowed, in the record's currency"),
        field_metadata("BLOCKED", "Blocked", "Checkbox", default="false", rank=240,
                       description="No new orders or invoices while set"),
        field_metadata("EMPLOYEES", "Employees", "Integer", rank=250),
        field_metadata("BALANCE", "Open balance", "Double", access="ReadOnly", rank=260,
                       description="Maintained by the ERP's ledger"),
        field_metadata("LASTINVOICEDATE", "Last invoice date", "Date", access="ReadOnly", rank=270),
        field_metadata("NOTES", "Notes", rank=280),
    ]
    return fields


FIELDS: dict[str, list[dict]] = {
    "Customer": _company_fields("Customer"),
    "Supplier": _company_fields("Supplier"),
    "Person": [
        field_metadata("FIRSTNAME", "First name", max_length=50, access="Mandatory", rank=10),
        field_metadata("MIDDLENAME", "Middle name", max_length=50, rank=20),
        field_metadata("LASTNAME", "Last name", max_length=50, access="Mandatory", rank=30),
        field_metadata("TITLE", "Title", max_length=30, rank=40, description="Academic or courtesy title"),
        field_metadata("POSITION", "Position", max_length=60, rank=50),
        field_metadata("EMAIL", "E-mail", max_length=254, rank=60),
        field_metadata("PHONE_DIRECT", "Direct phone", max_length=30, rank=70),
        field_metadata("PHONE_MOBILE", "Mobile phone", max_length=30, rank=80),
        field_metadata("BIRTHDATE", "Birth date", "Date", rank=90),
        field_metadata("COMPANYNAME", "Company name", max_length=100, rank=100,
                       description="The company as the person gave it (an import can make a CRM company of it)"),
    ],
    "Project": [
        field_metadata("NAME", "Project name", max_length=100, access="Mandatory", rank=10),
        field_metadata("NUMBER", "Project number", max_length=20, access="ReadOnly", rank=20,
                       description="Assigned by the ERP when the project is created"),
        field_metadata("TEXT", "Description", max_length=2000, rank=30),
        field_metadata("URL", "Web site", max_length=254, rank=40),
        field_metadata("ENDDATE", "End date", "Date", rank=50),
        field_metadata("STATUS", "Status", "List", list_name="projectstatus", default="PLANNED", rank=60),
        field_metadata("BUDGET", "Budget", "Double", rank=70),
    ],
}
FIELD_INDEX: dict[str, dict[str, dict]] = {t: {f["FieldKey"]: f for f in fs} for t, fs in FIELDS.items()}

# Texts the connector answers in SuperOffice's multi-language form (US:"…";NO:"…"), as a connector may: the portal
# shows them in the user's language. The Demo ERP's own screens and messages keep the English of FIELDS.
MULTI_LANGUAGE: dict[str, dict[str, str]] = {
    "CUSTOMERGROUP": {"DisplayName": 'US:"Customer group";NO:"Kundegruppe"',
                      "DisplayDescription": 'US:"Price and discount group";NO:"Pris- og rabattgruppe"'},
}


def answered_fields(actor_type: str) -> list[dict]:
    """The FieldMetadataInfo of GetSupportedActorTypeFields: FIELDS with the MULTI_LANGUAGE texts."""
    return [{**meta, **MULTI_LANGUAGE.get(meta["FieldKey"], {})} for meta in FIELDS[actor_type]]


SEARCHABLE_FIELDS: dict[str, list[str]] = {
    "Customer": ["NAME", "NUMBER1", "POSTALCITY", "COUNTRY", "CUSTOMERGROUP", "CURRENCY", "CREDITLIMIT",
                 "EMPLOYEES", "BLOCKED", "LASTINVOICEDATE"],
    "Supplier": ["NAME", "NUMBER1", "POSTALCITY", "COUNTRY", "CURRENCY", "PAYMENTTERMS", "CREDITLIMIT",
                 "EMPLOYEES", "BLOCKED", "LASTINVOICEDATE"],
    "Person": ["FIRSTNAME", "LASTNAME", "EMAIL", "POSITION", "BIRTHDATE"],
    "Project": ["NAME", "NUMBER", "STATUS", "ENDDATE", "BUDGET"],
}

CONFIG_FIELDS: list[dict] = [
    field_metadata("INTRO", "Demo ERP", "Label", rank=10,
                   default="The Demo ERP is built into the portal: no server to install. Any API user works "
                           "with the password \"demo\"; leave the user empty to connect without one.",
                   description="Try every sync feature without a real ERP."),
    field_metadata("CompanyDb", "Company database", max_length=20, access="Mandatory", default="DEMO", rank=20,
                   description="Name of the ERP company (client) to synchronise with"),
    field_metadata("ApiUser", "API user", max_length=60, rank=30, description="Optional"),
    field_metadata("ApiPassword", "API password", "Password", max_length=60, rank=40,
                   description="Needed when an API user is given (the demo password is \"demo\")"),
    field_metadata("Currency", "Base currency", "List", list_name="currencies", default="EUR", rank=50),
    # In SuperOffice's multi-language form (a quote inside a text is written twice), shown in the user's language.
    field_metadata("SimulateOffline", 'US:"Simulate offline ERP";NO:"Simuler at ERP-et er frakoblet"', "Checkbox",
                   default="false", rank=60,
                   description='US:"Answer every call with a Warning (""ERP is offline"") to try degraded mode";'
                               'NO:"Svar på hvert kall med en advarsel (""ERP er frakoblet"") for å prøve '
                               'redusert modus"'),
]
