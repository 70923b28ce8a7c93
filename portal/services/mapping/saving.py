"""What every save of a mapping, list mapping, default or rank shares: the sync-running check, forgetting the
values the two sides agreed on for a re-targeted field, the audit entry, and the commit that an active connection
refuses when the change would add activation problems."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    ACTIVE_RUN_STATUSES,
    ActorTypeConfig,
    Connection,
    ErpField,
    Link,
    SyncRun,
)
from portal.services import audit
from portal.services.mapping.rules import MappingError, field_label, mapping_problems


def sync_running(connection: Connection) -> bool:
    return db.session.scalar(
        select(SyncRun.id).where(SyncRun.connection_id == connection.id,
                                 SyncRun.status.in_(ACTIVE_RUN_STATUSES)).limit(1)) is not None


def _forget_agreed_value(config: ActorTypeConfig, erp_key: str) -> int:
    """Drop ``erp_key`` from the agreed values of every link of this actor type; returns how many changed."""
    changed = 0
    links = db.session.scalars(select(Link).where(Link.connection_id == config.connection_id,
                                                  Link.erp_actor_type == config.erp_actor_type)).all()
    for link in links:
        if link.base and erp_key in link.base:
            link.base = {k: v for k, v in link.base.items() if k != erp_key}
            changed += 1
    return changed


def _guarded_commit(connection: Connection, problems_before: list[str], what: str) -> None:
    """Commit the pending change, unless the connection is active and the change adds activation problems:
    then roll it back and refuse with those problems."""
    if connection.active:
        db.session.flush()
        before = set(problems_before)
        new = [p for p in mapping_problems(connection) if p not in before]
        if new:
            db.session.rollback()
            raise MappingError([f"The connection is active, and {what} would stop it from being valid: "
                                + " ".join(new) + " Deactivate the connection first, or fix that instead."])
    db.session.commit()


def _problems_now(connection: Connection) -> list[str]:
    return mapping_problems(connection) if connection.active else []


def _audit(action: str, erp_field_or_config, connection: Connection, *, before: dict, after: dict,
           object_type: str, secret: bool = False, **ctx) -> None:
    if isinstance(erp_field_or_config, ErpField):  # the audit names the actor type by its constant
        what = (f"{connection.name} / {erp_field_or_config.actor_type.erp_actor_type}: "
                f"“{field_label(erp_field_or_config)}”")
    else:
        what = f"{connection.name} / {erp_field_or_config.erp_actor_type}"
    audit.record(action, erp_field_or_config, before=before, after=after, object_type=object_type,
                 object_repr=what, secret_keys=frozenset({"default_value"}) if secret else frozenset(), **ctx)
