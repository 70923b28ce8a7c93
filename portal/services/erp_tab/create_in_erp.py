"""Create in ERP: the dialog's view of the new actor, then ``CreateActor`` and the link.

Rules checked → ``CreateActor`` carrying an idempotency key derived from (connection GUID, CRM type, CRM id, the
dialog's nonce), so a repeated click returns the actor created the first time → one transaction for the CRM
write-back, the link and the audit row. A second submit that finds the link answers it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.models import CRM_MODELS, ActorTypeConfig, Connection, CrmFieldType, ErpField
from portal.services import audit
from portal.services.actor_labels import actor_label
from portal.services.crm_rules import check_crm_values
from portal.services.erp_tab.ask_user import _ask_prefill, _checked_answers
from portal.services.erp_tab.erp_calls import _client, _failed, _list_texts, _release, _warnings, get_lists
from portal.services.erp_tab.errors import InvalidInput, NotFound, RuleBroken
from portal.services.erp_tab.fields import ask_fields, crm_value_text, fields_by_key
from portal.services.erp_tab.linking import LinkOutcome, _audit_repr, _crm_labels, _existing, _labels, link_base
from portal.services.erp_tab.sections import Section, _parent_of, require_create
from portal.services.erp_tab.unmappable import _crm_unmappable, _keeping_unmappable, _why_unmappable
from portal.services.labels import value_texts
from portal.services.links import LinkError, create_link
from portal.services.sync.fieldmap import check_erp_values, crm_side, erp_side, mapped_fields, to_crm_values, write_crm
from portal.services.values import ConversionError, normalize_erp, same_value

NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def idempotency_key(guid: str, crm_type: str, crm_id: int, nonce: str) -> str:
    """The CreateActor idempotency key: the same dialog (nonce) for the same record always sends the same key."""
    digest = hashlib.sha256(f"erp-tab|{guid}|{crm_type}|{crm_id}|{nonce}".encode()).hexdigest()
    return f"erp-tab-{digest[:40]}"


@dataclass
class NewActor:
    """What "Create in ERP" will send (for the dialog) — or the problems that stop it."""

    values: dict
    problems: list[str]
    prefill: dict[str, object]
    ask: list[ErpField]
    lists: dict[str, dict[str, str]]
    notes: list[str] = field(default_factory=list)  # CRM values left out of the new actor, and why
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # names of the list items in ``values``


def _new_values(record, config: ActorTypeConfig, notes: list[str] | None = None) -> tuple[dict, list[str]]:
    """Admin defaults overlaid with the record's mapped CRM values (CRM → ERP fields); problems as sentences.

    A CRM value the ERP cannot hold (a list item without a list mapping, too long, unconvertible) is left out of
    the new actor — never sent as a blank — and the CRM keeps it; the sentence saying so is appended to ``notes``.
    Only when the ERP needs a value for that field and nothing else supplies one (an admin default, an ask-user
    answer) is it a problem that stops the create.
    """
    values: dict = {}
    problems: list[str] = []
    for f in config.fields:
        if f.has_default and not f.ask_user and not f.missing_in_erp and not f.read_only:
            try:
                default = normalize_erp(f.field_type, f.default_value)
            except ConversionError:
                continue
            if default is not None:
                values[f.field_key] = default
    fields = [f for f in mapped_fields(config, synced_only=True) if f.to_erp]
    crm_values, errors = crm_side(record, fields)
    errors.update(check_erp_values(crm_values, fields))
    by_key = {f.erp_key: f for f in fields}
    erp_fields = fields_by_key(config)
    asked = {f.field_key for f in ask_fields(config)}
    for key, text in errors.items():
        f, erp_field = by_key[key], erp_fields.get(key)
        label = f.erp_label or f.crm_label
        why = _why_unmappable(label, crm_value_text(record, f), text, listed=f.crm_type == CrmFieldType.LIST,
                              target="the ERP")
        if key in asked:
            outcome = f"the new {actor_label(config)} gets the value you enter below"
        elif key in values:
            outcome = f"the new {actor_label(config)} gets the default value instead"
        elif erp_field is not None and (erp_field.mandatory or erp_field.connector_mandatory):
            problems.append(f"{why}, and the ERP needs a value for {label}.")
            continue
        else:
            outcome = f"left out of the new {actor_label(config)}"
        if notes is not None:
            notes.append(f"{why}: {outcome}; the CRM keeps it.")
    for key, value in crm_values.items():
        if key not in errors and value is not None:
            values[key] = value
    return values, problems


def new_actor(section: Section, config: ActorTypeConfig, lists: dict[str, dict[str, str]] | None = None
              ) -> NewActor:
    """The Create in ERP dialog: the ask-user fields (with their lists, read unless given) and what the CRM will
    send."""
    require_create(section)
    _parent_of(section)
    ask = ask_fields(config)
    notes: list[str] = []
    values, problems = _new_values(section.record, config, notes)
    prefill = _ask_prefill(config, None, section.record)
    if lists is None:
        lists = get_lists(section.connection, ask)
    texts = value_texts(config.fields, values, lists, lambda unnamed: _read_texts(section.connection, unnamed, values))
    return NewActor(values, problems, prefill, ask, lists, notes, texts)


def _read_texts(connection: Connection, fields: list[ErpField], values: Mapping) -> dict[str, dict[str, str]]:
    """GetListItems for the list items among ``values`` (on failure: none, the keys are shown)."""
    client = _client(connection, retries=0)
    _release()
    try:
        return _list_texts(client, connection.guid, fields, [{"FieldValues": values}])
    finally:
        client.close()


def create(section: Section, config: ActorTypeConfig, nonce: str, answers: Mapping[str, object], *, user=None,
           **ctx) -> LinkOutcome:
    """CreateActor with the mapped CRM values, the admin defaults and the answers, then the link."""
    require_create(section)
    if section.link is not None:  # a second submit (or someone else) got there first: answer the link
        return LinkOutcome(section.link, already=True)
    if not NONCE_RE.match(nonce or ""):
        raise InvalidInput("The dialog expired. Close it and search again.")
    parent = _parent_of(section)
    _ask, answers, ask_crm = _checked_answers(config, answers)
    values, value_problems = _new_values(section.record, config)
    if value_problems:
        raise InvalidInput("The record cannot be sent to the ERP: " + " ".join(value_problems))
    values.update({k: v for k, v in answers.items() if v is not None})
    connection_id, crm_type, record_id = section.connection.id, section.crm_type, section.record.id
    guid, actor_type, connection_name = section.connection.guid, config.erp_actor_type, section.connection.name
    config_id = config.id
    shown = actor_label(config)  # the name users see (read now: the session is released below)
    actor = {"ActorType": actor_type, "ErpKey": "", "LastModified": "", "FieldValues": values}
    if parent is not None:
        actor["ParentActorType"], actor["ParentErpKey"] = parent
    key = idempotency_key(guid, crm_type, record_id, nonce)
    client = _client(section.connection)
    _release()
    try:
        try:
            created = client.create_actor(guid, actor, idempotency_key=key)
        except ConnectorError as exc:
            raise _failed(exc, f"The {shown} could not be created in the ERP") from exc
        warnings = _warnings(client)
    finally:
        client.close()
    erp_key = created["ErpKey"]
    erp_values = {**values, **(created.get("FieldValues") or {})}
    created = {**created, "ActorType": created.get("ActorType") or actor_type, "FieldValues": erp_values}

    record = db.session.get(CRM_MODELS[crm_type], record_id)
    config = db.session.get(ActorTypeConfig, config_id)
    if record is None:
        raise NotFound(f"The record was deleted meanwhile; {shown} {erp_key} was created in the ERP but not "
                       "linked.")
    # Values the ERP holds that the CRM does not (its own numbers, defaults, the answers) flow back where mapped —
    # never over a CRM value the ERP could not take (left out of the new actor, so the CRM keeps it).
    back = [f for f in mapped_fields(config, synced_only=True) if f.to_crm]
    crm_now, _ = crm_side(record, back, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, back)
    kept = _crm_unmappable(record, back)
    incoming = {f.erp_key: erp_now[f.erp_key] for f in back
                if f.erp_key not in erp_errors and f.erp_key not in kept
                and not same_value(crm_now.get(f.erp_key), erp_now.get(f.erp_key))}
    crm_values, _skipped = to_crm_values(incoming, back)
    for crm_key in check_crm_values(crm_type, crm_values, record=record):
        crm_values.pop(crm_key)  # a value the CRM's own rules refuse is not stored (the CRM keeps its own)
    crm_values.update(_keeping_unmappable(record, config, ask_crm))
    changes = write_crm(record, crm_values)
    db.session.flush()
    base = link_base(record, config, erp_values)
    try:
        link = create_link(connection_id=connection_id, crm_type=crm_type, crm_id=record_id, actor=created,
                           base=base, crm_updated_at=record.updated_at, created_by_id=getattr(user, "id", None),
                           result=f"Created in the ERP by {getattr(user, 'name', 'a user')}")
    except LinkError as exc:
        existing = _existing(section, actor_type, erp_key)
        if existing is not None:
            return LinkOutcome(existing, already=True)
        raise RuleBroken(f"{shown} {erp_key} was created in the ERP but could not be linked: {exc}") from exc
    audit.record("erp.create", object_type=crm_type, object_id=record_id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "actor": f"{actor_type} {erp_key}", "sent": sorted(values),
                        "to_crm": sorted(key for key, _old, _new in changes)},
                 actor=user, **ctx)
    db.session.commit()
    return LinkOutcome(link, to_erp=_labels(config, values), to_crm=_crm_labels(crm_type, changes),
                       warnings=warnings)
