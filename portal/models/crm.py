"""The CRM records the ERP tab hangs on, their admin-editable lists, and the catalogue of their fields.

``crm_fields(crm_type)`` is the single description of every mappable CRM field — the built-in ones
(``BUILTIN_CRM_FIELDS``) followed by the user-defined ones an admin added (portal/models/user_fields.py): the CRM
forms, the mapping screen (type compatibility, automatic pre-mapping by ERP field key), the import and the sync
engine (reading and writing values) all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from flask import g, has_app_context
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, false, select
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TimestampMixin
from portal.models.user_fields import TEXT_MAX_LENGTH, UserField, UserFieldSlots


class CrmType(StrEnum):
    COMPANY = "company"
    CONTACT = "contact"
    PROJECT = "project"


class CrmList(StrEnum):
    COUNTRY = "country"
    BUSINESS = "business"
    CATEGORY = "category"
    PROJECT_STATUS = "project_status"


LIST_LABELS = {
    CrmList.COUNTRY: "Countries",
    CrmList.BUSINESS: "Business",
    CrmList.CATEGORY: "Category",
    CrmList.PROJECT_STATUS: "Project status",
}


class ListItem(TimestampMixin, db.Model):
    """An entry of one of the admin-editable CRM lists (country, business, category, project status)."""

    __tablename__ = "list_item"
    __table_args__ = (UniqueConstraint("list_name", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(120))
    rank: Mapped[int] = mapped_column(default=0)
    deleted: Mapped[bool] = mapped_column(default=False)

    def __repr__(self) -> str:
        return f"<ListItem {self.list_name}:{self.name}>"


class WebAndPostalAddressMixin:
    """The web site, postal address and country a company and a contact both have (SuperOffice's contact and
    person; spec §3.5 pre-maps URL, POSTALAD1..3, POSTALZIP, POSTALCITY, POSTALCOUNTY, POSTALSTATE and the country
    for both)."""

    url: Mapped[str] = mapped_column(String(254), default="")
    postal_address1: Mapped[str] = mapped_column(String(120), default="")
    postal_address2: Mapped[str] = mapped_column(String(120), default="")
    postal_address3: Mapped[str] = mapped_column(String(120), default="")
    postal_zip: Mapped[str] = mapped_column(String(20), default="")
    postal_city: Mapped[str] = mapped_column(String(80), default="")
    postal_county: Mapped[str] = mapped_column(String(80), default="")
    postal_state: Mapped[str] = mapped_column(String(80), default="")
    country_id: Mapped[int | None] = mapped_column(ForeignKey("list_item.id", ondelete="SET NULL"))

    @declared_attr
    def country(cls) -> Mapped[ListItem | None]:
        return relationship(foreign_keys=f"[{cls.__name__}.country_id]")


class Company(WebAndPostalAddressMixin, UserFieldSlots, TimestampMixin, db.Model):
    __tablename__ = "company"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[str] = mapped_column(String(40), default="")
    code: Mapped[str] = mapped_column(String(40), default="")
    vat_no: Mapped[str] = mapped_column(String(40), default="")
    department: Mapped[str] = mapped_column(String(120), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    street_address1: Mapped[str] = mapped_column(String(120), default="")
    street_address2: Mapped[str] = mapped_column(String(120), default="")
    street_address3: Mapped[str] = mapped_column(String(120), default="")
    street_zip: Mapped[str] = mapped_column(String(20), default="")
    street_city: Mapped[str] = mapped_column(String(80), default="")
    street_county: Mapped[str] = mapped_column(String(80), default="")
    street_state: Mapped[str] = mapped_column(String(80), default="")
    business_id: Mapped[int | None] = mapped_column(ForeignKey("list_item.id", ondelete="SET NULL"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("list_item.id", ondelete="SET NULL"))
    # checkbox and number fields (issue #18): a checkbox is never blank (False), a number may be (None)
    no_mailings: Mapped[bool] = mapped_column(default=False, server_default=false())
    employees: Mapped[int | None] = mapped_column()
    credit_limit: Mapped[float | None] = mapped_column()

    business: Mapped[ListItem | None] = relationship(foreign_keys=[business_id])
    category: Mapped[ListItem | None] = relationship(foreign_keys=[category_id])
    contacts: Mapped[list[Contact]] = relationship(back_populates="company", order_by="Contact.last_name")

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.department})" if self.department else self.name


class Contact(WebAndPostalAddressMixin, UserFieldSlots, TimestampMixin, db.Model):
    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id", ondelete="SET NULL"), index=True)
    first_name: Mapped[str] = mapped_column(String(80), default="")
    middle_name: Mapped[str] = mapped_column(String(80), default="")
    last_name: Mapped[str] = mapped_column(String(80), default="", index=True)
    title: Mapped[str] = mapped_column(String(80), default="")
    position: Mapped[str] = mapped_column(String(120), default="")
    number: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone_direct: Mapped[str] = mapped_column(String(40), default="")
    phone_mobile: Mapped[str] = mapped_column(String(40), default="")
    phone_private: Mapped[str] = mapped_column(String(40), default="")
    phone_other: Mapped[str] = mapped_column(String(40), default="")
    birth_date: Mapped[date | None] = mapped_column()
    no_mailings: Mapped[bool] = mapped_column(default=False, server_default=false())

    company: Mapped[Company | None] = relationship(back_populates="contacts")

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.middle_name, self.last_name) if p) or "(no name)"

    @property
    def name(self) -> str:
        return self.display_name


class Project(UserFieldSlots, TimestampMixin, db.Model):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[str] = mapped_column(String(40), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    status_id: Mapped[int | None] = mapped_column(ForeignKey("list_item.id", ondelete="SET NULL"))
    end_date: Mapped[date | None] = mapped_column()
    url: Mapped[str] = mapped_column(String(254), default="")
    completed: Mapped[bool] = mapped_column(default=False, server_default=false())

    status: Mapped[ListItem | None] = relationship(foreign_keys=[status_id])

    @property
    def display_name(self) -> str:
        return self.name


CRM_MODELS: dict[CrmType, type[db.Model]] = {
    CrmType.COMPANY: Company,
    CrmType.CONTACT: Contact,
    CrmType.PROJECT: Project,
}

CRM_TYPE_LABELS = {CrmType.COMPANY: "Company", CrmType.CONTACT: "Contact", CrmType.PROJECT: "Project"}


class CrmFieldType(StrEnum):
    TEXT = "text"
    LONGTEXT = "longtext"
    DATE = "date"
    LIST = "list"
    CHECKBOX = "checkbox"  # bool, never blank (False)
    INTEGER = "integer"  # int | None
    DECIMAL = "decimal"  # float | None


@dataclass(frozen=True)
class CrmField:
    key: str  # attribute on the model (for lists: the *_id column)
    label: str
    type: CrmFieldType
    max_length: int = 0
    list_name: str | None = None
    # ERP field keys that pre-map to this field (spec §3.5), compared case-insensitively.
    erp_aliases: tuple[str, ...] = ()
    required: bool = False
    user_defined: bool = False  # an admin's field (its key is a slot column, udf_<type>_<n>)
    show_in_list: bool = False  # a column of the record list (user-defined fields; built-in columns are fixed)


def _t(key, label, length, *aliases, required=False):
    return CrmField(key, label, CrmFieldType.TEXT, length, None, tuple(aliases), required)


# WebAndPostalAddressMixin's text fields, the same on a company and a contact (the country follows per type)
_WEB_AND_POSTAL = (
    _t("url", "Web site", 254, "URL"),
    _t("postal_address1", "Postal address 1", 120, "POSTALAD1"),
    _t("postal_address2", "Postal address 2", 120, "POSTALAD2"),
    _t("postal_address3", "Postal address 3", 120, "POSTALAD3"),
    _t("postal_zip", "Postal zip code", 20, "POSTALZIP"),
    _t("postal_city", "Postal city", 80, "POSTALCITY"),
    _t("postal_county", "Postal county", 80, "POSTALCOUNTY"),
    _t("postal_state", "Postal state", 80, "POSTALSTATE"),
)

BUILTIN_CRM_FIELDS: dict[CrmType, tuple[CrmField, ...]] = {
    CrmType.COMPANY: (
        _t("name", "Name", 200, "NAME", required=True),
        _t("department", "Department", 120, "DEPARTMENT"),
        _t("code", "Code", 40, "NUMBER1"),
        _t("number", "Number", 40, "NUMBER2"),
        _t("vat_no", "VAT/org. number", 40, "VATNO"),
        _t("phone", "Telephone", 40, "PHONE"),
        _t("fax", "Fax", 40, "FAX"),
        _t("email", "E-mail", 254, "EMAIL"),
        *_WEB_AND_POSTAL,
        _t("street_address1", "Street address 1", 120, "STREETAD1"),
        _t("street_address2", "Street address 2", 120, "STREETAD2"),
        _t("street_address3", "Street address 3", 120, "STREETAD3"),
        _t("street_zip", "Street zip code", 20, "STREETZIP"),
        _t("street_city", "Street city", 80, "STREETCITY"),
        _t("street_county", "Street county", 80, "STREETCOUNTY"),
        _t("street_state", "Street state", 80, "STREETSTATE"),
        CrmField("country_id", "Country", CrmFieldType.LIST, 0, CrmList.COUNTRY, ("COUNTRY",)),
        CrmField("business_id", "Business", CrmFieldType.LIST, 0, CrmList.BUSINESS, ("BUSINESS",)),
        CrmField("category_id", "Category", CrmFieldType.LIST, 0, CrmList.CATEGORY, ("CATEGORY",)),
        CrmField("no_mailings", "No mailings", CrmFieldType.CHECKBOX),
        CrmField("employees", "Employees", CrmFieldType.INTEGER),
        CrmField("credit_limit", "Credit limit", CrmFieldType.DECIMAL),
    ),
    CrmType.CONTACT: (
        _t("first_name", "First name", 80, "FIRSTNAME"),
        _t("middle_name", "Middle name", 80, "MIDDLENAME"),
        _t("last_name", "Last name", 80, "LASTNAME"),
        _t("title", "Title", 80, "TITLE"),
        _t("position", "Position", 120, "POSITION"),
        _t("number", "Number", 40, "NUMBER"),
        _t("email", "E-mail", 254, "EMAIL"),
        _t("phone_direct", "Direct phone", 40, "PHONE_DIRECT"),
        _t("phone_mobile", "Mobile phone", 40, "PHONE_MOBILE"),
        _t("phone_private", "Private phone", 40, "PHONE_PRIVATE"),
        _t("phone_other", "Other phone", 40, "PHONE_OTHER"),
        CrmField("birth_date", "Birth date", CrmFieldType.DATE, 0, None, ("BIRTHDATE",)),
        *_WEB_AND_POSTAL,
        CrmField("country_id", "Country", CrmFieldType.LIST, 0, CrmList.COUNTRY, ("POSTALCOUNTRY", "COUNTRY")),
        CrmField("no_mailings", "No mailings", CrmFieldType.CHECKBOX),
    ),
    CrmType.PROJECT: (
        _t("name", "Project name", 200, "NAME", required=True),
        _t("number", "Number", 40, "NUMBER"),
        CrmField("description", "Description", CrmFieldType.LONGTEXT, 0, None, ("TEXT",)),
        _t("url", "URL", 254, "URL"),
        CrmField("end_date", "End date", CrmFieldType.DATE, 0, None, ("ENDDATE",)),
        CrmField("status_id", "Status", CrmFieldType.LIST, 0, CrmList.PROJECT_STATUS, ("STATUS",)),
        CrmField("completed", "Completed", CrmFieldType.CHECKBOX),
    ),
}


_CACHE_KEY = "_user_crm_fields"


def _user_field_spec(definition: UserField) -> CrmField:
    return CrmField(definition.slot, definition.label, CrmFieldType(definition.field_type),
                    TEXT_MAX_LENGTH if definition.field_type == CrmFieldType.TEXT else 0,
                    definition.list_name if definition.field_type == CrmFieldType.LIST else None, (),
                    definition.required, user_defined=True, show_in_list=definition.show_in_list)


def user_crm_fields(crm_type: str) -> tuple[CrmField, ...]:
    """The user-defined fields of a record type, in their rank order. Read once per request (or job: both run
    in an app context of their own) and kept in ``g``; ``forget_user_fields`` drops that copy after a change.
    Outside an app context (pure unit tests of the rules) there is no database, so only the built-in fields."""
    if not has_app_context():
        return ()
    cached = g.get(_CACHE_KEY)
    if cached is None:
        cached = {crm_type: () for crm_type in CrmType}
        rows = db.session.scalars(select(UserField).order_by(UserField.crm_type, UserField.rank, UserField.id))
        for definition in rows:
            if definition.crm_type in cached:
                cached[definition.crm_type] += (_user_field_spec(definition),)
        setattr(g, _CACHE_KEY, cached)
    return cached[CrmType(crm_type)]


def forget_user_fields() -> None:
    if has_app_context():
        g.pop(_CACHE_KEY, None)


def crm_fields(crm_type: str) -> tuple[CrmField, ...]:
    """Every field of a record type: the built-in ones, then the user-defined ones."""
    crm_type = CrmType(crm_type)
    return BUILTIN_CRM_FIELDS[crm_type] + user_crm_fields(crm_type)


_BUILTIN_BY_KEY: dict[tuple[str, str], CrmField] = {
    (crm_type.value, field.key): field for crm_type, fields in BUILTIN_CRM_FIELDS.items() for field in fields}


def crm_field(crm_type: str, key: str) -> CrmField | None:
    """The field ``key`` of a record type, built-in or user-defined (a dict lookup: the sync calls it per value)."""
    found = _BUILTIN_BY_KEY.get((crm_type, key))
    if found is not None:
        return found
    if key.startswith("udf_"):
        for field in user_crm_fields(crm_type):
            if field.key == key:
                return field
    elif crm_type not in _CRM_TYPE_VALUES:
        CrmType(crm_type)  # ValueError for an unknown record type, as before
    return None


_CRM_TYPE_VALUES = frozenset(crm_type.value for crm_type in CrmType)
