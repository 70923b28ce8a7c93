"""Protocol methods that write actors: CreateActor (with an optional ``IdempotencyKey``) and SaveActors (all or
nothing: every actor is checked before any is written)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from portal.connectors.builtin.demo.catalogue import ACTOR_TYPES
from portal.connectors.builtin.demo.protocol_connections import ConnectionMethods
from portal.connectors.builtin.demo.request_members import _normalize_guid
from portal.connectors.builtin.demo.timestamps import _now_micros, format_timestamp
from portal.connectors.builtin.demo.values import _blank
from portal.connectors.service import ProtocolError


class WriteMethods(ConnectionMethods):
    """CreateActor and SaveActors."""

    def CreateActor(self, body: dict) -> dict:
        actor = body.get("Actor")
        if not isinstance(actor, Mapping):
            raise ProtocolError("Actor must be an ErpActor object.", error_code="BAD_REQUEST")
        idem_key = body.get("IdempotencyKey") or None
        if idem_key is not None and not isinstance(idem_key, str):
            raise ProtocolError("IdempotencyKey must be a string.", error_code="BAD_REQUEST")
        with self._write() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(actor)
            if idem_key:
                seen = conn.execute("SELECT actor_type, erp_key FROM idempotency_keys WHERE idem_key = ?",
                                    (idem_key,)).fetchone()
                if seen is not None:
                    if seen["actor_type"] != actor_type:
                        raise ProtocolError(f"IdempotencyKey {idem_key!r} was already used to create a "
                                            f"{seen['actor_type']}.", error_code="IDEMPOTENCY_CONFLICT")
                    row = self._rows_by_key(conn, [seen["erp_key"]], live_only=False)[seen["erp_key"]]
                    return self._answer(config, Actor=self._actor_doc(row))
            fields, errors = self._clean(actor_type, actor.get("FieldValues"), include_read_only=False)
            self._add_missing_mandatory(errors, actor_type, fields)
            parent = None
            if actor_type == "Person":
                try:
                    parent = self._check_parent(conn, actor.get("ParentActorType"), actor.get("ParentErpKey"))
                except ValueError as exc:
                    errors["ParentErpKey"] = str(exc)
            if errors:
                raise ProtocolError(f"The {actor_type.lower()} was not created: " + "; ".join(errors.values()) + ".",
                                    json.dumps(errors, ensure_ascii=False), "VALIDATION_FAILED")
            key = self._insert(conn, actor_type, [fields], [parent])[0]
            if idem_key:
                conn.execute("INSERT INTO idempotency_keys (idem_key, actor_type, erp_key, connection_guid, "
                             "created_at) VALUES (?, ?, ?, ?, ?)",
                             (idem_key, actor_type, key, _normalize_guid(body.get("ConnectionGuid")),
                              format_timestamp(_now_micros())))
            row = self._rows_by_key(conn, [key])[key]
        return self._answer(config, Actor=self._actor_doc(row))

    def SaveActors(self, body: dict) -> dict:
        actors = body.get("Actors")
        if not isinstance(actors, list) or not all(isinstance(a, Mapping) for a in actors):
            raise ProtocolError("Actors must be a list of ErpActor objects.", error_code="BAD_REQUEST")
        with self._write() as conn:
            config = self._connection(conn, body)
            existing = self._rows_by_key(conn, [a.get("ErpKey") for a in actors])
            # Validate everything first; write nothing unless every actor is valid.
            work: dict[str, dict] = {}
            problems: list[str] = []
            unknown = False
            for number, actor in enumerate(actors, start=1):
                actor_type, key = actor.get("ActorType"), actor.get("ErpKey")
                label = f"{actor_type} {key}" if isinstance(key, str) and key else f"actor #{number}"
                if actor_type not in ACTOR_TYPES:
                    problems.append(f"{label}: the Demo ERP has no actor type {actor_type!r}")
                    continue
                row = existing.get(key) if isinstance(key, str) else None
                if row is None or row["actor_type"] != actor_type:
                    unknown = True
                    problems.append(f"{label}: unknown ErpKey {key!r} (no such {actor_type} in the Demo ERP)")
                    continue
                entry = work.get(key) or {"row": row, "parent": (row["parent_type"], row["parent_key"]),
                                          "fields": json.loads(row["fields"])}
                clean, errors = self._clean(actor_type, actor.get("FieldValues"), include_read_only=False)
                merged = {**entry["fields"], **clean}
                self._add_missing_mandatory(errors, actor_type, merged)
                parent = entry["parent"]
                if actor_type == "Person" and not _blank(actor.get("ParentErpKey")) \
                        and actor.get("ParentErpKey") != parent[1]:
                    try:
                        parent = self._check_parent(conn, actor.get("ParentActorType"), actor.get("ParentErpKey"))
                    except ValueError as exc:
                        errors["ParentErpKey"] = str(exc)
                if errors:
                    problems += [f"{label}: {message}" for message in errors.values()]
                    continue
                work[key] = {**entry, "fields": merged, "parent": parent}
            if problems:
                shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                raise ProtocolError(f"Nothing was saved: {shown}.", "\n".join(problems),
                                    "UNKNOWN_ERP_KEY" if unknown else "VALIDATION_FAILED")
            self._update(conn, [(key, entry["row"]["actor_type"], entry["parent"], entry["fields"])
                                for key, entry in work.items()])
            saved = self._rows_by_key(conn, list(work))
        return self._answer(config, Actors=self._actor_docs([saved[key] for key in work]))
