"""What every action that makes or removes a link shares: the outcome, the base a new link starts from, the
labels of what was written, the audit row's text and the link a repeated submit finds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from portal.extensions import db
from portal.models import ActorTypeConfig, Link, crm_field
from portal.services.erp_tab.fields import fields_by_key
from portal.services.erp_tab.sections import Section
from portal.services.erp_tab.unmappable import _unmappable
from portal.services.links import link_for
from portal.services.sync.fieldmap import crm_side, erp_side, mapped_fields
from portal.services.values import same_value


@dataclass
class LinkOutcome:
    link: Link
    already: bool = False  # a repeated submit found the link in place
    to_erp: list[str] = field(default_factory=list)  # labels written to the ERP
    to_crm: list[str] = field(default_factory=list)  # labels written to the CRM
    warnings: list[str] = field(default_factory=list)


def _agreed(record, config: ActorTypeConfig, erp_values: Mapping) -> dict:
    """The base of future three-way merges: every synced mapped field on which both sides now agree."""
    fields = mapped_fields(config, synced_only=True)
    crm_values, crm_errors = crm_side(record, fields, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, fields)
    return {f.erp_key: crm_values[f.erp_key] for f in fields
            if f.erp_key not in crm_errors and f.erp_key not in erp_errors
            and same_value(crm_values.get(f.erp_key), erp_now.get(f.erp_key))}


def link_base(record, config: ActorTypeConfig, erp_values: Mapping) -> dict:
    """The base a new link starts from (Connect, Create in ERP): the agreed fields (``_agreed``) and, for a field
    left as it is because one side holds a value the other cannot hold, the value of the *other* side.

    The sync merge (portal/services/sync/merge.py) reads a field missing from the base as "never agreed": the
    next sync would call the differing values a conflict and let the conflict rule pick a winner — a blank CRM
    value winning (CRM on top of the sync priority) would blank the ERP's unmapped item after all. With the base
    set to the side that can be carried over, the unmappable value reads as that side's pending change: the
    engine tries to carry it over, reports that it cannot (an error of the record, the field keeping its base),
    and never writes the other side's value over it — until someone edits that side (an edit flows as usual) or
    the admin maps the item (then the value flows). When neither side can be carried over, the field stays
    without a base ("never agreed"); the engine leaves it alone while the CRM value is unmappable.
    """
    base = _agreed(record, config, erp_values)
    fields = [f for f in mapped_fields(config, synced_only=True) if f.erp_key not in base]
    if not fields:
        return base
    crm_values, crm_errors = crm_side(record, fields, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, fields)
    for f in fields:
        key = f.erp_key
        bad = _unmappable(f, crm_values.get(key), crm_errors.get(key), erp_now.get(key), erp_errors.get(key),
                          config.crm_type)
        if bad.crm and not bad.erp:
            base[key] = erp_now.get(key)
        elif bad.erp and not bad.crm:
            base[key] = crm_values.get(key)
    return base


def _labels(config: ActorTypeConfig, keys: Iterable[str]) -> list[str]:
    by_key = fields_by_key(config)
    return [(by_key[k].display_name or k) if k in by_key else k for k in keys]


def _crm_labels(crm_type: str, changes: Iterable[tuple[str, object, object]]) -> list[str]:
    labels = []
    for key, _old, _new in changes:
        spec = crm_field(crm_type, key)
        labels.append(spec.label if spec is not None else key)
    return labels


def _audit_repr(section: Section, actor_type: str, erp_key: str) -> str:
    return f"{section.record.display_name} ↔ {actor_type} {erp_key} ({section.connection.name})"


def _existing(section: Section, actor_type: str, erp_key: str) -> Link | None:
    """After create_link refused: the record's link when it is to this very actor (a repeated or concurrent
    submit got there first), else None."""
    db.session.rollback()
    link = link_for(section.connection.id, section.crm_type, section.record.id)
    if link is not None and link.erp_actor_type == actor_type and link.erp_key == erp_key:
        return link
    return None
