"""Stored actor rows as ErpActor documents: the fields a request asks for (all when it names none), a blank field
as ``null`` (an unset Checkbox as ``false``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from portal.connectors.builtin.demo.catalogue import FIELD_INDEX
from portal.connectors.builtin.demo.timestamps import format_timestamp


def _field_default(meta: dict):
    return False if meta["FieldType"] == "Checkbox" else None


# (FieldKey, value when not stored) of every field, per actor type: FieldValues when no FieldKeys are given.
_ALL_FIELDS: dict[str, tuple[tuple[str, object], ...]] = {
    t: tuple((key, _field_default(meta)) for key, meta in index.items()) for t, index in FIELD_INDEX.items()}


def _field_plan(actor_type: str, field_keys: Sequence[str] | None) -> tuple[tuple[str, object], ...]:
    """The (FieldKey, value when not stored) pairs an answer gives: the requested known fields, once each."""
    if field_keys is None:
        return _ALL_FIELDS[actor_type]
    index = FIELD_INDEX[actor_type]
    return tuple((key, _field_default(index[key])) for key in dict.fromkeys(field_keys) if key in index)


def _doc_of(row: sqlite3.Row, plan: Sequence[tuple[str, object]], stored: Mapping | None = None) -> dict:
    """An ErpActor document of a stored row; ``plan`` from _field_plan, ``stored`` the parsed fields if at hand."""
    if stored is None:
        stored = json.loads(row["fields"])
    return {
        "ActorType": row["actor_type"],
        "ErpKey": row["erp_key"],
        "LastModified": format_timestamp(row["last_modified"]),
        "ParentActorType": row["parent_type"] or "",
        "ParentErpKey": row["parent_key"] or "",
        "FieldValues": {key: stored.get(key, default) for key, default in plan},
    }
