"""Protocol methods that read actors by key and by change: GetActors and the change feed GetActorsByTimestamp
(keyset paging with ``Limit``/``Cursor``; a party also counts as changed when one of its children changed)."""

from __future__ import annotations

import datetime as dt

from portal.connectors.builtin.tryton.actor_documents import ActorDocuments
from portal.connectors.builtin.tryton.catalogue import PROJECT
from portal.connectors.builtin.tryton.connections import _Connection
from portal.connectors.builtin.tryton.errors import _protocol
from portal.connectors.builtin.tryton.request_members import _actor_type, _field_keys, _int_keys, _limit
from portal.connectors.builtin.tryton.values import iso_utc, parse_timestamp
from portal.connectors.protocol import ok_response
from portal.connectors.service import ProtocolError


class ReadMethods(ActorDocuments):
    """GetActors and GetActorsByTimestamp."""

    # -------------------------------------------------------------------------------------- reading
    @_protocol
    def GetActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        return ok_response(Actors=self._get(conn, actor_type, _int_keys(body.get("ErpKeys")),
                                            _field_keys(body, actor_type)))

    # ------------------------------------------------------------------------------- change feed
    @_protocol
    def GetActorsByTimestamp(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        since = parse_timestamp(body.get("UpdatedOnOrAfter"), "UpdatedOnOrAfter")
        limit = _limit(body)
        after: tuple[dt.datetime, int] | None = None
        cursor = body.get("Cursor")
        if cursor:
            try:
                stamp, _, last_id = str(cursor).rpartition("|")
                after = (parse_timestamp(stamp), int(last_id))
            except (ValueError, ProtocolError):
                raise ProtocolError("The Cursor is not one this connector gave out.", error_code="BAD_CURSOR") from None
            since = max(since, after[0]) if since else after[0]
        ids = self._changed_ids(conn, actor_type, since)
        snaps = self._read(conn, actor_type, ids)
        ordered = sorted((s for s in snaps.values() if s["_lm"] is not None and (since is None or s["_lm"] >= since)),
                         key=lambda s: (s["_lm"], s["id"]))
        if after is not None:
            ordered = [s for s in ordered if (s["_lm"], s["id"]) > after]
        next_cursor = None
        if limit is not None and len(ordered) > limit:
            ordered = ordered[:limit]
            last = ordered[-1]
            next_cursor = f"{iso_utc(last['_lm'])}|{last['id']}"
        payload = {"Actors": self._actors(conn, actor_type, ordered, _field_keys(body, actor_type))}
        if limit is not None:
            payload["NextCursor"] = next_cursor
        return ok_response(**payload)

    def _changed_ids(self, conn: _Connection, actor_type: str, since: dt.datetime | None) -> list[int]:
        if since is None:
            return self._search_ids(conn, actor_type, [], order=[["id", "ASC"]])
        if actor_type == PROJECT:
            return self._search_ids(conn, actor_type, [["last_modified_at", ">=", since]], order=[["id", "ASC"]])
        client = conn.client
        changed: set[int] = set()
        everything = {"active_test": False}
        for model, party_field in (("party.address", "party"), ("party.contact_mechanism", "party"),
                                   ("party.identifier", "party")):
            for row in client.search_read(model, [["last_modified_at", ">=", since]], [party_field],
                                          context=everything):
                if row.get(party_field):
                    changed.add(row[party_field])
        domain = [["last_modified_at", ">=", since]]
        if changed:
            domain = [["OR", domain[0], ["id", "in", sorted(changed)]]]
        return self._search_ids(conn, actor_type, domain, order=[["id", "ASC"]])
