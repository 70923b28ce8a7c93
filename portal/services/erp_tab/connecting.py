"""Connect a record to an existing ERP actor, and disconnect it.

* connect: rules checked (read) → ``GetActors`` → ``SaveActors`` with the chosen values → one transaction that
  writes the CRM record, stores the link (its base = the values both sides now agree on, see ``link_base`` for the
  fields left as they are) and the audit row. If that transaction fails, the ERP holds the agreed values, which is
  harmless. A value one side holds and the other cannot hold is never written over, by a blank or otherwise;
* disconnect never calls the connector and only deletes the link.
"""

from __future__ import annotations

from collections.abc import Mapping

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.models import CRM_MODELS, ActorTypeConfig
from portal.services import audit
from portal.services.actor_labels import actor_label
from portal.services.erp_tab.ask_user import _checked_answers
from portal.services.erp_tab.comparison import _check_target, _plan, _stamp, opened_actor
from portal.services.erp_tab.erp_calls import _failed, _release, _warnings
from portal.services.erp_tab.errors import InvalidInput, NotFound, RuleBroken, StaleComparison
from portal.services.erp_tab.fields import fields_by_key
from portal.services.erp_tab.linking import LinkOutcome, _audit_repr, _crm_labels, _existing, _labels, link_base
from portal.services.erp_tab.live import forget_live_values
from portal.services.erp_tab.sections import Section, require_connect, require_disconnect
from portal.services.erp_tab.unmappable import _keeping_unmappable
from portal.services.links import LinkError, create_link
from portal.services.links import remove_link as _remove_link
from portal.services.sync.fieldmap import mapped_fields, to_crm_values, write_crm
from portal.services.values import ConversionError, normalize_erp, same_value


def connect(section: Section, config: ActorTypeConfig, erp_key: str, picks: Mapping[str, str],
            answers: Mapping[str, object], *, erp_stamp: str, crm_stamp: str, user=None, **ctx) -> LinkOutcome:
    """Link the record to an existing actor with the values the user picked (written to both sides).

    ``picks`` maps an ERP field key to ``'crm'`` or ``'erp'``; ``answers`` holds the ask-user values (normalized
    ERP values). Raises StaleComparison when either side changed since the comparison was shown.
    """
    require_connect(section)
    erp_key = (erp_key or "").strip()
    link = section.link
    if link is not None:
        if link.erp_actor_type == config.erp_actor_type and link.erp_key == erp_key:
            return LinkOutcome(link, already=True)
        raise RuleBroken(f"This record is already linked to {actor_label(section.connection, link.erp_actor_type)} "
                         f"{link.erp_key} on "
                         f"{section.connection.name}.")
    _check_target(section, config, erp_key)
    ask, answers, ask_crm = _checked_answers(config, answers)
    connection_id, crm_type, record_id = section.connection.id, section.crm_type, section.record.id
    guid, actor_type, connection_name = section.connection.guid, config.erp_actor_type, section.connection.name
    config_id = config.id
    with opened_actor(section, config, erp_key) as (client, actor):
        record = section.record
        if str(actor.get("LastModified") or "") != erp_stamp or _stamp(record.updated_at) != crm_stamp:
            raise StaleComparison("The record changed in the CRM or the ERP while you were choosing. "
                                  "Check the values again.")
        rows, _unsyncable, _same_count = _plan(record, config, actor, exclude=answers.keys())
        errors, to_erp, to_crm = {}, {}, {}
        for row in rows:
            if row.kept:  # a value the other side cannot hold: left as it is on both sides, whatever was posted
                continue
            pick = picks.get(row.key) or row.only
            if pick not in ("crm", "erp"):
                errors[row.name] = f"Choose the value to keep for {row.label}."
            elif pick == "crm" and row.crm_blocked:
                errors[row.name] = f"The CRM value of {row.label} cannot be used: {row.crm_blocked}."
            elif pick == "erp" and row.erp_blocked:
                errors[row.name] = f"The ERP value of {row.label} cannot be used: {row.erp_blocked}."
            elif pick == "crm":
                to_erp[row.key] = row.crm_value
            else:
                to_crm[row.key] = row.erp_value
        if errors:
            raise InvalidInput("Choose a value for every field that differs.", errors)
        current = actor.get("FieldValues") or {}
        for f in ask:
            value = answers.get(f.field_key)
            try:
                now = normalize_erp(f.field_type, current.get(f.field_key))
            except ConversionError:
                now = None
            if not same_value(value, now):
                to_erp[f.field_key] = value
        crm_values, crm_problems = to_crm_values(to_crm, mapped_fields(config, synced_only=True))
        if crm_problems:  # checked in _plan already; a safety net before anything is written
            raise InvalidInput("Some ERP values cannot be stored in the CRM.",
                               {f"pick_{fields_by_key(config)[k].id}": t for k, t in crm_problems.items()})
        crm_values.update(_keeping_unmappable(record, config, ask_crm))
        final = dict(actor)
        if to_erp:
            payload = {"ActorType": actor_type, "ErpKey": erp_key, "LastModified": actor.get("LastModified") or "",
                       "FieldValues": to_erp}
            _release()
            try:
                saved = client.save_actors(guid, [payload])
            except ConnectorError as exc:
                raise _failed(exc, "The ERP record could not be updated, so nothing was linked") from exc
            stored = next((a for a in saved if a.get("ErpKey") == erp_key), None)
            final["FieldValues"] = {**current, **to_erp, **((stored or {}).get("FieldValues") or {})}
            if stored is not None and stored.get("LastModified"):
                final["LastModified"] = stored["LastModified"]
        warnings = _warnings(client)

    # One transaction: the CRM write, the link (with the agreed base) and the audit row.
    record = db.session.get(CRM_MODELS[crm_type], record_id)
    config = db.session.get(ActorTypeConfig, config_id)
    if record is None:
        raise NotFound("The record was deleted meanwhile; nothing was linked.")
    changes = write_crm(record, crm_values)
    db.session.flush()
    base = link_base(record, config, final.get("FieldValues") or {})
    try:
        link = create_link(connection_id=connection_id, crm_type=crm_type, crm_id=record_id, actor=final, base=base,
                           crm_updated_at=record.updated_at, created_by_id=getattr(user, "id", None),
                           result=f"Linked by {getattr(user, 'name', 'a user')}")
    except LinkError as exc:
        existing = _existing(section, actor_type, erp_key)
        if existing is not None:
            return LinkOutcome(existing, already=True)
        raise RuleBroken(str(exc)) from exc
    audit.record("erp.link", object_type=crm_type, object_id=record_id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "actor": f"{actor_type} {erp_key}",
                        "to_erp": sorted(to_erp), "to_crm": sorted(key for key, _old, _new in changes)},
                 actor=user, **ctx)
    db.session.commit()
    forget_live_values(section.connection.id, actor_type, erp_key)  # Connect may have written to it
    return LinkOutcome(link, to_erp=_labels(config, to_erp), to_crm=_crm_labels(crm_type, changes),
                       warnings=warnings)


def disconnect(section: Section, *, user=None, **ctx) -> tuple[str, str] | None:
    """Delete the link only: the connector is not called and ERP data is untouched. Returns the (actor type,
    ERP key) that was linked, or None when there was no link (a repeated click)."""
    require_disconnect(section)
    link = section.link
    if link is None:
        return None
    actor_type, erp_key = link.erp_actor_type, link.erp_key
    _remove_link(link)
    audit.record("erp.disconnect", object_type=section.crm_type, object_id=section.record.id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 before={"actor": f"{actor_type} {erp_key}", "connection": section.connection.name},
                 after={"actor": None, "connection": section.connection.name}, actor=user, **ctx)
    db.session.commit()
    section.link = None
    forget_live_values(section.connection.id, actor_type, erp_key)
    return actor_type, erp_key
