"""The linked actor's values, read live for the section (GetActors + GetListItems), shared between concurrent
requests and kept a few seconds (portal.services.live_cache); a missing actor marks the link broken."""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.connectors.client import ConnectorError
from portal.database import utcnow
from portal.extensions import db
from portal.models import Link, LinkStatus
from portal.services.erp_tab.erp_calls import _client, _list_texts, _release, _warnings
from portal.services.erp_tab.fields import display_value, tab_fields
from portal.services.erp_tab.sections import Section
from portal.services.links import mark_broken
from portal.services.live_cache import live_cache

# seconds a request waits for another request's read of the same actor: longer would park web threads outside
# the guard's caps (portal.connectors.guard) whenever that ERP is slow
SHARED_READ_WAIT = 2.0


@dataclass
class LiveValues:
    fields: list[tuple[str, str]] = field(default_factory=list)  # (label, text), rank order
    broken: bool = False
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    reload: bool = False  # this read broke or restored the link: the section (heading, message) is shown anew


@dataclass(frozen=True)
class _ActorRead:
    """One live read of an actor (shared by the requests that waited on it, kept a few seconds when it worked)."""

    actor: dict | None = None
    texts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str = ""


def forget_live_values(connection_id: int, actor_type: str, erp_key: str) -> None:
    """The tab changed the actor or its link (Connect, Create, Disconnect, Sync now): read it live next time."""
    live_cache().forget(lambda key: key[:3] == (connection_id, actor_type, erp_key))


def live_values(section: Section) -> LiveValues:
    """The Show in ERP tab values of the linked actor, read live (GetActors + GetListItems).

    A missing actor marks the link broken ("the ERP no longer has …"); an actor that is back clears it.
    Connector failures come back as ``error`` (the section offers Retry), never as an exception.
    """
    link = section.link
    if link is None:
        return LiveValues()
    link_id, actor_type, erp_key = link.id, link.erp_actor_type, link.erp_key
    fields = tab_fields(section.link_config)
    keys = [f.field_key for f in fields]
    connection = section.connection
    connection_id, guid = connection.id, connection.guid
    # a sync of the link changes last_synced_at: the next look reads the ERP again (portal.services.live_cache)
    cache_key = (connection_id, actor_type, erp_key, tuple(keys), link.last_synced_at)

    def read() -> _ActorRead:
        client = _client(connection, retries=0)
        try:
            try:
                actors = client.get_actors(guid, actor_type, [erp_key], keys)
            except ConnectorError as exc:
                return _ActorRead(error=exc.user_message, warnings=_warnings(client))
            actor = next((a for a in actors if a.get("ErpKey") == erp_key), None)
            texts = _list_texts(client, guid, fields, [actor]) if actor is not None and fields else {}
            return _ActorRead(actor=actor, texts=texts, warnings=_warnings(client))
        finally:
            client.close()

    _release()
    # only a found actor is kept: a missing one is looked up again at once (it may be back)
    answer = live_cache().get(
        cache_key, read, wait=SHARED_READ_WAIT, keep=lambda r: not r.error and r.actor is not None,
        waited_too_long=lambda: _ActorRead(error=f"{connection.name} is slow: another request for this record is "
                                                 "still waiting for it. Try again in a moment."))
    if answer.error:
        return LiveValues(error=answer.error, warnings=answer.warnings)
    actor, texts, warnings = answer.actor, answer.texts, answer.warnings
    link = db.session.get(Link, link_id)
    if link is None:  # disconnected meanwhile
        return LiveValues(warnings=warnings)
    if actor is None:
        if link.status != LinkStatus.BROKEN:
            mark_broken(link, f"The ERP no longer has {actor_type} {erp_key}.")
            db.session.commit()
            return LiveValues(broken=True, warnings=warnings, reload=True)
        return LiveValues(broken=True, warnings=warnings)
    restored = link.status == LinkStatus.BROKEN
    if restored:
        # The ERP has the actor again: the next sync merges the record in full (a retry due now), so CRM edits
        # made while the link was broken are not left behind the connection's CRM mark; the last result (the broken
        # message) no longer holds.
        link.status, link.status_message, link.last_result, link.retry_at = LinkStatus.OK, "", "", utcnow()
        db.session.commit()
    values = actor.get("FieldValues") or {}
    shown = [(f.display_name or f.field_key, display_value(f, values.get(f.field_key), texts.get(f.field_key)))
             for f in fields]
    return LiveValues(fields=shown, warnings=warnings, reload=restored)
