"""Protocol methods that write actors: CreateActor (with an optional ``IdempotencyKey``) and SaveActors (all or
nothing: everything is validated and checked for stale writes first, then written in one Tryton transaction per
model, guarded by Tryton's optimistic lock)."""

from __future__ import annotations

import time

from portal.connectors.builtin.tryton.actor_changes import ActorChanges
from portal.connectors.builtin.tryton.catalogue import FIELD_INDEX, PERSON, PROJECT
from portal.connectors.builtin.tryton.connections import _Connection
from portal.connectors.builtin.tryton.errors import _protocol
from portal.connectors.builtin.tryton.request_members import _actor_type, _chunks, _int_keys
from portal.connectors.builtin.tryton.values import iso_utc, parse_timestamp
from portal.connectors.builtin.tryton_rpc import TrytonUserError
from portal.connectors.protocol import ok_response
from portal.connectors.service import ProtocolError


class WriteMethods(ActorChanges):
    """CreateActor and SaveActors."""

    @_protocol
    def CreateActor(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor = body.get("Actor")
        if not isinstance(actor, dict):
            raise ProtocolError("Actor must be an object.", error_code="BAD_REQUEST")
        actor_type = _actor_type(actor)
        key = body.get("IdempotencyKey")
        key = str(key).strip() if key not in (None, "") else None
        if key is None:
            return ok_response(Actor=self._create(conn, actor_type, actor))
        with self._key_lock(conn.guid, key):
            seen = self.store.recall(conn.guid, key)
            if seen is not None:
                seen_type, erp_key = seen
                found = self._get(conn, seen_type, _int_keys([erp_key]), list(FIELD_INDEX[seen_type]))
                if not found:
                    raise ProtocolError(f"The {seen_type} created for this request ({erp_key}) no longer exists in "
                                        "Tryton.", f"IdempotencyKey {key}", "NOT_FOUND")
                return ok_response(Actor=found[0])
            created = self._create(conn, actor_type, actor)
            self.store.remember(conn.guid, key, actor_type, created["ErpKey"])
            return ok_response(Actor=created)

    def _create(self, conn: _Connection, actor_type: str, actor: dict) -> dict:
        clean = self._clean(conn, actor_type, actor.get("FieldValues"), creating=True)
        if actor_type == PROJECT:
            values, _ = self._work_changes(conn, clean, None)
            model = "project.work"
        else:
            parent = self._check_parent(conn, actor, required=actor_type == PERSON)
            values, _ = self._party_changes(conn, actor_type, clean, None, parent)
            model = "party.party"
        with conn.write_lock:
            for attempt in range(3):
                try:
                    new_id = conn.client.model(model, "create", [values])[0]
                    break
                except TrytonUserError as exc:  # SQLite + a concurrent writer using the party code sequence
                    if "code" not in exc.message.lower() or "unique" not in exc.message.lower() or attempt == 2:
                        raise
                    time.sleep(0.2 * (attempt + 1))
        found = self._get(conn, actor_type, [new_id], list(FIELD_INDEX[actor_type]))
        if not found:
            raise ProtocolError("Tryton created the record but it cannot be read back.", f"{model} {new_id}",
                                "ERP_ERROR")
        return found[0]

    @_protocol
    def SaveActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actors = body.get("Actors")
        if not isinstance(actors, list):
            raise ProtocolError("Actors must be a list.", error_code="BAD_REQUEST")
        if not actors:
            return ok_response(Actors=[])
        # 1. validate everything before touching Tryton
        plans = []
        for actor in actors:
            if not isinstance(actor, dict):
                raise ProtocolError("Each actor must be an object.", error_code="BAD_REQUEST")
            actor_type = _actor_type(actor)
            ids = _int_keys([actor.get("ErpKey")])
            if not ids:
                raise ProtocolError(f"The {actor_type} has no valid ErpKey ({actor.get('ErpKey')!r}).",
                                    error_code="NOT_FOUND")
            seen = parse_timestamp(actor.get("LastModified"), "LastModified")
            plans.append((actor_type, ids[0], seen, actor, self._clean(conn, actor_type, actor.get("FieldValues"),
                                                                       creating=False)))
        # 2. read the current state; 3. detect stale writes
        current: dict[tuple[str, int], dict] = {}
        for actor_type in {p[0] for p in plans}:
            wanted = [p[1] for p in plans if p[0] == actor_type]
            existing: list[int] = []
            for chunk in _chunks(wanted):
                existing += self._search_ids(conn, actor_type, [["id", "in", chunk]])
            for snap_id, snap in self._read(conn, actor_type, existing).items():
                current[(actor_type, snap_id)] = snap
        missing = [f"{t} {i}" for t, i, *_ in plans if (t, i) not in current]
        if missing:
            raise ProtocolError(f"Not found in Tryton (deleted or archived): {', '.join(missing)}.",
                                error_code="NOT_FOUND")
        stale = []
        for actor_type, erp_id, seen, actor, _clean in plans:
            now = current[(actor_type, erp_id)]["_lm"]
            if seen is not None and now is not None and now > seen:
                name = actor.get("FieldValues", {}).get("NAME") if isinstance(actor.get("FieldValues"), dict) else None
                stale.append(f"{actor_type} {erp_id}{' (' + name + ')' if name else ''} was changed in Tryton at "
                             f"{iso_utc(now)}, after {iso_utc(seen)}")
        if stale:
            raise ProtocolError("Not saved: the record changed in Tryton since it was last read, so saving would "
                                "overwrite those changes. " + "; ".join(stale) + ".",
                                "stale LastModified", "CONFLICT")
        # 4. build the writes (may still find invalid values: unknown subdivision, missing parent …)
        party_args: list = []
        work_args: list = []
        stamps: dict = {}
        for actor_type, erp_id, _seen, actor, clean in plans:
            snap = current[(actor_type, erp_id)]
            if actor_type == PROJECT:
                values, record_stamps = self._work_changes(conn, clean, snap)
                target = work_args
            else:
                parent = self._check_parent(conn, actor, required=False) if actor_type == PERSON else None
                values, record_stamps = self._party_changes(conn, actor_type, clean, snap, parent)
                target = party_args
            values = {k: v for k, v in values.items() if actor_type != PROJECT or snap.get(k) != v}
            if values:
                target += [[erp_id], values]
                stamps.update(record_stamps)
        # 5. write: one transaction per model, guarded by Tryton's optimistic lock
        with conn.write_lock:
            if party_args:
                conn.client.model("party.party", "write", *party_args, context={"_timestamp": stamps})
            if work_args:
                conn.client.model("project.work", "write", *work_args, context={"_timestamp": stamps})
        # 6. answer with the actors as now stored
        saved = []
        for actor_type, erp_id, *_ in plans:
            saved += self._get(conn, actor_type, [erp_id], list(FIELD_INDEX[actor_type]))
        return ok_response(Actors=saved)
