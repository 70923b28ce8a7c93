"""User-defined fields on companies, contacts and projects (issue #18; SuperOffice's "user-defined fields").

An admin defines a field (label, type, list, required, shown in the lists); its values live in a **typed slot
column** of the record's own table — ``udf_text_1`` … ``udf_list_4`` — which the definition claims
(``UserField.slot``). The slots are real columns, so everything that reads and writes CRM fields by column — the
forms, the sync engine's batched Core statements, the import's bulk inserts, the search index, list filters —
handles a user-defined field exactly as a built-in one, typed and indexable, with no per-record side rows to join
and no JSON to parse. The price is a fixed number of slots per type (``SLOTS``), as SuperOffice's own fixed
``udcontSmall``/``udcontLarge`` columns; the design is argued in docs/decisions.md.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Date, Double, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from portal.extensions import db
from portal.models.base import TimestampMixin

# How many slots each record table has per field type (the values of CrmFieldType they hold).
SLOTS: dict[str, int] = {"text": 6, "integer": 3, "decimal": 3, "checkbox": 4, "date": 3, "list": 4}
UDF_TYPES = tuple(SLOTS)
TEXT_MAX_LENGTH = 254


def slot_key(field_type: str, number: int) -> str:
    return f"udf_{field_type}_{number}"


def slot_keys(field_type: str) -> list[str]:
    return [slot_key(field_type, n) for n in range(1, SLOTS[field_type] + 1)]


ALL_SLOT_KEYS: tuple[str, ...] = tuple(key for field_type in UDF_TYPES for key in slot_keys(field_type))


def _slot_column(field_type: str):
    """The column of one slot: blank is '' for text (as the built-in text fields), False for a checkbox,
    NULL otherwise; a list slot holds a CRM list item id."""

    def column(cls):
        if field_type == "text":
            return mapped_column(String(TEXT_MAX_LENGTH), default="", server_default="", nullable=False)
        if field_type == "checkbox":
            return mapped_column(Boolean, default=False, server_default=false(), nullable=False)
        if field_type == "list":
            return mapped_column(Integer, ForeignKey("list_item.id", ondelete="SET NULL"), nullable=True)
        sql_type = {"integer": Integer, "decimal": Double, "date": Date}[field_type]
        return mapped_column(sql_type, nullable=True)

    return declared_attr(column)


# The slot columns, as a mixin of Company, Contact and Project (declared_attr: a column with a foreign key
# must be built per table).
UserFieldSlots = type("UserFieldSlots", (), {
    slot_key(field_type, n): _slot_column(field_type)
    for field_type in UDF_TYPES for n in range(1, SLOTS[field_type] + 1)
})


class UserField(TimestampMixin, db.Model):
    """One user-defined field of a record type: which slot holds its values, and how it is shown."""

    __tablename__ = "user_field"
    __table_args__ = (UniqueConstraint("crm_type", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    crm_type: Mapped[str] = mapped_column(String(16), index=True)
    slot: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(80))
    field_type: Mapped[str] = mapped_column(String(16))
    list_name: Mapped[str | None] = mapped_column(String(32))
    required: Mapped[bool] = mapped_column(default=False)
    show_in_list: Mapped[bool] = mapped_column(default=False)
    rank: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<UserField {self.crm_type}.{self.slot} {self.label!r}>"
