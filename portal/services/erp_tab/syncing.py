"""Sync now: the record synced on one connection at once through the sync engine, and what that did."""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.services import audit
from portal.services.erp_tab.erp_calls import _failed, _release
from portal.services.erp_tab.errors import RuleBroken
from portal.services.erp_tab.linking import _audit_repr
from portal.services.erp_tab.live import forget_live_values
from portal.services.erp_tab.sections import Section
from portal.services.labels import ItemNames
from portal.services.sync_now_text import conflict_text
from portal.services.sync_now_text import triples as _triples


@dataclass
class SyncOutcome:
    to_erp: list[tuple[str, str, str]] = field(default_factory=list)
    to_crm: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    message: str = ""
    ok: bool = True
    warning: str = ""
    run_id: int | None = None

    @property
    def nothing(self) -> bool:
        return self.ok and not (self.to_erp or self.to_crm or self.conflicts)


def sync_now(section: Section, *, user=None, **ctx) -> SyncOutcome:
    """Sync this record on this connection at once through the sync engine (synchronous)."""
    link = section.link
    if link is None:
        raise RuleBroken(f"This record is not connected to {section.connection.name}.")
    from portal.services.sync import engine
    from portal.services.sync.runs import RunError

    link_id, connection_name = link.id, section.connection.name
    actor_type, erp_key = link.erp_actor_type, link.erp_key
    _release()
    try:
        result = engine.sync_record(link_id, requested_by=user)
    except ConnectorError as exc:
        db.session.rollback()
        raise _failed(exc, "The sync failed") from exc
    except RunError as exc:  # RunBusy: another run is active; RunRefused: not linked, inactive …
        db.session.rollback()
        raise RuleBroken(str(exc) or "Another sync is running on this connection; try again shortly.") from exc
    names = ItemNames(section.link_config.fields if section.link_config else [], section.crm_type)
    outcome = SyncOutcome(
        to_erp=_triples(names.sent(getattr(result, "to_erp", []))), to_crm=_triples(getattr(result, "to_crm", [])),
        conflicts=[conflict_text(c) for c in names.conflicts(getattr(result, "conflicts", None))],
        message=str(getattr(result, "message", "") or ""), ok=bool(getattr(result, "ok", True)),
        warning=str(getattr(result, "warning", "") or ""), run_id=getattr(result, "run_id", None))
    db.session.rollback()  # whatever the engine left in this session is its business; start clean
    audit.record("erp.sync_now", object_type=section.crm_type, object_id=section.record.id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "run_id": outcome.run_id, "ok": outcome.ok,
                        "to_erp": [label for label, _o, _n in outcome.to_erp],
                        "to_crm": [label for label, _o, _n in outcome.to_crm], "conflicts": len(outcome.conflicts)},
                 actor=user, **ctx)
    db.session.commit()
    forget_live_values(section.connection.id, actor_type, erp_key)
    return outcome
