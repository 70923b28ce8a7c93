"""The "select correct field values" step of Connect: the chosen actor read in full, the target checked free, and
every synced mapped field where the CRM record and the actor differ."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.models import ActorTypeConfig, ErpField, crm_field
from portal.services.actor_labels import actor_label
from portal.services.erp_tab.ask_user import _ask_prefill
from portal.services.erp_tab.erp_calls import _client, _failed, _list_texts, _release, _warnings, get_lists
from portal.services.erp_tab.errors import InvalidInput, RuleBroken
from portal.services.erp_tab.fields import ask_fields, crm_value_text, display_value, fields_by_key
from portal.services.erp_tab.sections import Section, _parent_of, require_connect
from portal.services.erp_tab.unmappable import _crm_refuses, _unmappable, _why_kept
from portal.services.links import LinkError, check_free
from portal.services.sync.fieldmap import check_erp_values, crm_side, erp_side, mapped_fields
from portal.services.values import is_blank, same_value


@dataclass
class CompareRow:
    """A mapped field whose CRM and ERP values differ; the user picks the value both sides get."""

    field_id: int
    key: str
    label: str
    crm_text: str
    erp_text: str
    crm_value: object
    erp_value: object
    crm_blocked: str = ""  # why the CRM value cannot be chosen ('' = it can)
    erp_blocked: str = ""
    # Why the field is left as it is on both sides ('' = the user picks a value): one side holds a value the other
    # side cannot hold (a list item without a list mapping, too long, the wrong type). Such a row offers no choice,
    # so neither a blank nor any other value is ever written over that value by Connect.
    kept: str = ""

    @property
    def name(self) -> str:
        return f"pick_{self.field_id}"

    @property
    def only(self) -> str | None:
        if self.crm_blocked and not self.erp_blocked:
            return "erp"
        if self.erp_blocked and not self.crm_blocked:
            return "crm"
        return None


@dataclass
class Comparison:
    actor: dict
    rows: list[CompareRow]
    unsyncable: list[tuple[str, str]]  # (label, reason): differing fields neither value of which can be used
    same: int  # mapped fields that already agree
    ask: list[ErpField]
    lists: dict[str, dict[str, str]]  # ERP lists of the ask fields, by list name
    prefill: dict[str, object]  # ask field key -> value to show
    erp_stamp: str
    crm_stamp: str
    warnings: list[str] = field(default_factory=list)

    @property
    def choices(self) -> list[CompareRow]:
        """The rows the user picks a value for (the others are left as they are on both sides)."""
        return [row for row in self.rows if not row.kept]


def _stamp(moment) -> str:
    return moment.isoformat() if isinstance(moment, datetime | date) else str(moment or "")


def _plan(record, config: ActorTypeConfig, actor: Mapping, texts: Mapping[str, Mapping[str, str]] | None = None,
          exclude: Iterable[str] = ()) -> tuple[list[CompareRow], list[tuple[str, str]], int]:
    """Compare the record with the actor over the synced mapped fields (minus ``exclude``).

    A differing field where either side holds a value the other side cannot hold (``_unmappable``) becomes a row
    with ``kept`` set: it is left as it is on both sides, whatever the directions, and never offers a blank."""
    excluded = set(exclude)
    by_key = fields_by_key(config)
    fields = [f for f in mapped_fields(config, synced_only=True) if f.erp_key not in excluded]
    raw = actor.get("FieldValues") or {}
    crm_values, crm_errors = crm_side(record, fields, erp_now=raw)
    erp_values, erp_errors = erp_side(raw, fields)
    too_long = check_erp_values(crm_values, fields)
    rows, unsyncable, same = [], [], 0
    for f in fields:
        key = f.erp_key
        c, e = crm_values.get(key), erp_values.get(key)
        if key not in crm_errors and key not in erp_errors and same_value(c, e):
            same += 1
            continue
        label = f.erp_label or f.crm_label
        crm_blocked = crm_errors.get(key) or too_long.get(key) or ""
        if not crm_blocked and not f.to_erp:
            crm_blocked = ("the field is read-only in the ERP" if f.read_only
                           else f"only ERP → CRM is mapped for {label}")
        erp_blocked = erp_errors.get(key, "")
        if not erp_blocked and not f.to_crm:
            erp_blocked = f"only CRM → ERP is mapped for {label}"
        if not erp_blocked and not is_blank(e):
            erp_blocked = _crm_refuses(config.crm_type, f, e)
        if not erp_blocked and is_blank(e):
            spec = crm_field(config.crm_type, f.crm_key)
            if spec is not None and spec.required:
                erp_blocked = f"the CRM needs a value for {f.crm_label}"
        erp_field = by_key.get(key)
        bad = _unmappable(f, c, crm_errors.get(key) or too_long.get(key), e, erp_errors.get(key), config.crm_type)
        if crm_blocked and erp_blocked and not bad:
            unsyncable.append((label, f"{crm_blocked}; {erp_blocked}"))
            continue
        crm_text = crm_value_text(record, f)
        erp_text = display_value(erp_field, raw.get(key), (texts or {}).get(key))
        rows.append(CompareRow(
            field_id=erp_field.id if erp_field is not None else 0, key=key, label=label, crm_text=crm_text,
            erp_text=erp_text, crm_value=c, erp_value=e, crm_blocked=crm_blocked, erp_blocked=erp_blocked,
            kept=_why_kept(label, crm_text, erp_text, bad) if bad else ""))
    return rows, unsyncable, same


def _fetch_actor(client: ConnectorClient, section: Section, config: ActorTypeConfig, erp_key: str,
                 keys: list[str]) -> dict:
    try:
        actors = client.get_actors(section.connection.guid, config.erp_actor_type, [erp_key], keys)
    except ConnectorError as exc:
        raise _failed(exc, "The ERP record could not be read") from exc
    actor = next((a for a in actors if a.get("ErpKey") == erp_key), None)
    if actor is None:
        raise RuleBroken(f"The ERP has no {actor_label(config)} {erp_key}.")
    parent = _parent_of(section)
    if parent is not None and (actor.get("ParentErpKey") or "") != parent[1]:
        raise RuleBroken(f"{actor_label(config)} {erp_key} is not under "
                         f"{actor_label(section.connection, parent[0])} {parent[1]}, the ERP record "
                         "of this contact's company.")
    return actor


def _check_target(section: Section, config: ActorTypeConfig, erp_key: str) -> None:
    try:
        check_free(section.connection.id, section.crm_type, section.record.id, config.erp_actor_type, erp_key)
    except LinkError as exc:
        raise RuleBroken(str(exc)) from exc


def _wanted_keys(config: ActorTypeConfig) -> list[str]:
    keys = [f.erp_key for f in mapped_fields(config, synced_only=True)]
    keys += [f.field_key for f in ask_fields(config)]
    return list(dict.fromkeys(keys))


@contextlib.contextmanager
def opened_actor(section: Section, config: ActorTypeConfig, erp_key: str) -> Iterator[tuple[ConnectorClient, dict]]:
    """The ERP actor ``erp_key`` read (GetActors: its synced and ask-user fields) on a client left open for the
    caller's further calls and closed after them; the session's transaction ends before the ERP is called (no lock
    held while it answers)."""
    wanted = _wanted_keys(config)
    _parent_of(section)
    client = _client(section.connection)
    _release()
    try:
        yield client, _fetch_actor(client, section, config, erp_key, wanted)
    finally:
        client.close()


def compare(section: Section, config: ActorTypeConfig, erp_key: str) -> Comparison:
    """The "select correct field values" step: GetActors (full), then every synced mapped field that differs."""
    require_connect(section)
    erp_key = (erp_key or "").strip()
    if not erp_key:
        raise InvalidInput("Pick an ERP record first.")
    _check_target(section, config, erp_key)
    ask = ask_fields(config)
    by_key = fields_by_key(config)
    with opened_actor(section, config, erp_key) as (client, actor):
        texts = _list_texts(client, section.connection.guid, by_key.values(), [actor])
        lists = get_lists(section.connection, ask, client)
        warnings = _warnings(client)
    record = section.record
    rows, unsyncable, same = _plan(record, config, actor, texts, exclude=[f.field_key for f in ask])
    return Comparison(actor=actor, rows=rows, unsyncable=unsyncable, same=same, ask=ask, lists=lists,
                      prefill=_ask_prefill(config, actor.get("FieldValues") or {}), erp_stamp=str(
                          actor.get("LastModified") or ""), crm_stamp=_stamp(record.updated_at), warnings=warnings)
