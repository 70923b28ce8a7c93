"""Two ERP connections on the same ERP client whose mappings overlap (issue #18, point 6.3).

SuperOffice lets two connections reach the same ERP; so does the portal. But when both sync the same ERP field
in the same direction, a record linked on both is written by both, and one connection can overwrite what the
other synced. That is worth a warning (never a refusal): on the selected connection's panel of the Sync tab and
when such a connection is activated.

The rules (docs/decisions.md, "Issue #18: smaller points"):

* **The same ERP client**: the same connector (the same row, or another row at the same normalised URL: one
  service registered twice) and the same non-secret configuration values — every stored value equal once text is
  trimmed and compared case-insensitively (URLs normalised, 50 = 50.0, blank = absent). Secrets are left out: a
  second API key or password for the same company database is still the same ERP. A deleted connection or
  connector counts for nothing.
* **Overlapping mappings**: both have the same ERP actor type switched on (and still offered by the connector),
  and at least one ERP field of it synced in the same direction on both — to the ERP on both, or to the CRM on
  both (``fieldmap.mapped_fields``: a usable mapping with that direction).

No connector call: everything is read from the database, so the panel can ask on every render.
"""

from __future__ import annotations

import json
import math

from sqlalchemy import select

from portal.extensions import db
from portal.models import Connection
from portal.services.actor_labels import actor_label
from portal.services.connectors import normalise_url
from portal.services.sync.fieldmap import MappedField, mapped_fields

MAX_LABELS = 4  # field labels named per direction before "and N more"


def _value(value: object) -> object:
    """A config value as compared: trimmed, case-folded text (URLs normalised), numbers as floats, blank → None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value.strip()
        if "://" in text:
            text = normalise_url(text)
        return text.casefold() or None
    return json.dumps(value, sort_keys=True, default=str).casefold()


def erp_identity(connection: Connection) -> dict[str, object]:
    """What identifies the ERP client a connection reaches: its non-secret config values, compared loosely."""
    values = {key: _value(value) for key, value in (connection.config_values or {}).items()}
    return {key: value for key, value in values.items() if value is not None}


def _connector_address(connection: Connection) -> str:
    return normalise_url(connection.connector.url)


def same_erp(one: Connection, other: Connection) -> bool:
    """Whether the two connections reach the same ERP client (same connector, same non-secret configuration)."""
    same_connector = one.connector_id == other.connector_id or _connector_address(one) == _connector_address(other)
    return same_connector and erp_identity(one) == erp_identity(other)


def synced_fields(connection: Connection) -> dict[str, dict[str, MappedField]]:
    """The fields synced in at least one direction, by switched-on (and offered) ERP actor type and field key."""
    return {config.erp_actor_type: {f.erp_key: f for f in mapped_fields(config, synced_only=True)}
            for config in connection.actor_types if config.is_active and config.supported}


def _join(labels: list[str]) -> str:
    if len(labels) > MAX_LABELS:
        shown = labels[:MAX_LABELS - 1]
        return f"{', '.join(shown)} and {len(labels) - len(shown)} more"
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def shared_directions(one: Connection, other: Connection) -> dict[str, tuple[list[str], list[str]]]:
    """Per actor type switched on in both: the labels of the ERP fields both sync to the ERP, and to the CRM
    (only actor types with at least one)."""
    mine, theirs = synced_fields(one), synced_fields(other)
    shared = {}
    for actor_type in sorted(mine.keys() & theirs.keys()):
        a, b = mine[actor_type], theirs[actor_type]
        keys = sorted(a.keys() & b.keys(), key=lambda k: (a[k].erp_label or k).casefold())
        to_erp = [a[k].erp_label or k for k in keys if a[k].to_erp and b[k].to_erp]
        to_crm = [a[k].erp_label or k for k in keys if a[k].to_crm and b[k].to_crm]
        if to_erp or to_crm:
            shared[actor_type] = (to_erp, to_crm)
    return shared


def _warning(connection: Connection, other: Connection, shared: dict[str, tuple[list[str], list[str]]]) -> str:
    parts = []
    for actor_type, (to_erp, to_crm) in shared.items():
        ways = ([f"{_join(to_erp)} to the ERP"] if to_erp else []) + ([f"{_join(to_crm)} to the CRM"] if to_crm else [])
        parts.append(f"{actor_label(connection, actor_type)}: {' and '.join(ways)}")
    state = "active" if other.active else "inactive"
    return (f"“{other.name}” ({state}) reaches the same ERP as {connection.name} (the same connector and "
            f"configuration) and syncs the same fields the same way — {'; '.join(parts)}. A record linked on both "
            "connections is written by both, and one can overwrite what the other synced. This is allowed; make "
            "sure it is intended.")


def overlaps(connection: Connection) -> list[str]:
    """Readable warnings, one per other (not deleted) connection that reaches the same ERP client with overlapping
    mappings; [] when there is none (or the connection itself is deleted)."""
    if connection is None or connection.deleted or connection.connector.deleted:
        return []
    others = db.session.scalars(select(Connection).where(Connection.deleted.is_(False),
                                                         Connection.id != connection.id)
                                .order_by(Connection.name, Connection.id)).all()
    warnings = []
    for other in others:
        if other.connector.deleted or not same_erp(connection, other):
            continue
        shared = shared_directions(connection, other)
        if shared:
            warnings.append(_warning(connection, other, shared))
    return warnings
