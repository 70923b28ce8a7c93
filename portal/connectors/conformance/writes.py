"""Per actor type, writing: CreateActor (with a parent for persons), the same IdempotencyKey again, and SaveActors
(the value stored and read back, LastModified global and never decreasing, the change feed listing the write)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from portal.connectors.client import ConnectorError
from portal.connectors.conformance.results import Failed, Skipped
from portal.connectors.conformance.runner import CheckRunner, _TypeState
from portal.connectors.conformance.wording import _error_text, _listing, _short

PARENT_TYPES = ("Customer", "Supplier", "Partner")


class WriteChecks(CheckRunner):
    """Checks of CreateActor and SaveActors, and the sample values they write."""

    def sample_value(self, meta: dict, tag: str) -> Any:
        ftype = meta["FieldType"]
        if ftype in ("Text", "Password"):
            text = f"CK-{meta['FieldKey'].title()}-{tag}"
            limit = meta.get("MaxLength") or 0
            return text[-limit:] if limit and len(text) > limit else text
        if ftype == "Integer":
            return 1
        if ftype == "Double":
            return 1.5
        if ftype == "Checkbox":
            return False
        if ftype == "Date":
            return datetime.now(UTC).date().isoformat()
        if ftype == "List":
            items = self.fetch_list(meta["ListName"])
            if not items:
                raise Skipped(f"the list {meta['ListName']} of the Mandatory field {meta['FieldKey']} is empty")
            return next(iter(items))
        return None

    @staticmethod
    def writable(meta: dict) -> bool:
        return meta["Access"] != "ReadOnly" and meta["FieldType"] != "Label"

    def marker_field(self, st: _TypeState) -> dict | None:
        """The Text field the SaveActors check changes: a name-like one if there is one."""
        texts = sorted((f for f in st.fields or [] if self.writable(f) and f["FieldType"] == "Text"),
                       key=lambda f: (f["Access"] != "Mandatory", "NAME" not in f["FieldKey"].upper(),
                                      f.get("Rank") or 0))
        return texts[0] if texts else None

    def parent_for(self, t: str) -> tuple[str, str]:
        if t != "Person":
            return "", ""
        for parent_type in PARENT_TYPES:
            created = self.types.get(parent_type, _TypeState(parent_type)).created
            if created:
                return parent_type, created["ErpKey"]
        for parent_type in PARENT_TYPES:
            for actor in self.types.get(parent_type, _TypeState(parent_type)).actors or []:
                return parent_type, actor["ErpKey"]
        for parent_type in PARENT_TYPES:  # the parent types were not checked in this run: look one up
            if parent_type not in (self.supported or []):
                continue
            reply = self.call("SearchActors", {"ConnectionGuid": self.guid, "ActorType": parent_type,
                                               "SearchText": "", "FieldKeys": [], "Limit": 1})
            for actor in self.actors_of(reply):
                if isinstance(actor.get("ErpKey"), str) and actor["ErpKey"]:
                    return parent_type, actor["ErpKey"]
        raise Skipped("a Person needs a parent customer or supplier, and there is none (check Customer too)")

    def check_create(self, t: str) -> str:
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        self.require_connection()
        tag = uuid.uuid4().hex[:6]
        values: dict[str, Any] = {}
        for meta in st.fields:
            name_like = meta["FieldType"] == "Text" and "NAME" in meta["FieldKey"].upper()
            if self.writable(meta) and (meta["Access"] == "Mandatory" or name_like):
                values[meta["FieldKey"]] = self.sample_value(meta, tag)
        marker = self.marker_field(st)
        if marker is not None and marker["FieldKey"] not in values:
            values[marker["FieldKey"]] = self.sample_value(marker, tag)
        parent_type, parent_key = self.parent_for(t)
        actor = {"ActorType": t, "ParentActorType": parent_type, "ParentErpKey": parent_key, "FieldValues": values}
        st.create_request = {"ConnectionGuid": self.guid, "Actor": actor, "IdempotencyKey": str(uuid.uuid4())}
        before = dict(self.max_seen)
        reply = self.call("CreateActor", st.create_request)
        created = self.member(reply, "Actor", dict, "an ErpActor object")
        problems = self.actor_problems(created, t)
        if problems:
            raise Failed(_listing(problems))
        st.created = created
        key = created["ErpKey"]
        kind, sort_key = self.stamp(created, t)
        expected_kind = st.kind or next(iter(self.kinds.values()), None)
        if expected_kind and kind != expected_kind:
            raise Failed(f"the new actor's LastModified {created['LastModified']} is not in the format of the others")
        best = before.get(kind)
        if best is not None and sort_key < best[0]:
            raise Failed(f"the new {t} {key} has LastModified {created['LastModified']}, earlier than "
                         f"{best[1]} read before it: LastModified must be global and never decrease"
                         + (" (this looks like a per-record version counter)" if kind == "int" else ""))
        self.see(created, t)
        type_problems, _ = self.value_problems([created], st, [])
        if type_problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(type_problems)}")
        found = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                       "ErpKeys": [key], "FieldKeys": st.field_keys}))
        if [a.get("ErpKey") for a in found] != [key]:
            raise Failed(f"GetActors does not find the new {t} {key}")
        feed = self.actors_of(self.by_timestamp(t, created["LastModified"], st.field_keys[:1]))
        if key not in {a.get("ErpKey") for a in feed}:
            raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={created['LastModified']}) does not list the new "
                         f"{t} {key}")
        where = f" under {parent_type} {parent_key}" if parent_key else ""
        return f"created {t} {key}{where}, LastModified {created['LastModified']}"

    def check_idempotent(self, t: str) -> str:
        st = self.state(t)
        if st.created is None or st.create_request is None:
            raise Skipped("needs CreateActor")
        first = st.created["ErpKey"]
        try:
            reply = self.call("CreateActor", st.create_request)
        except ConnectorError as exc:
            self.warn(f"(ext) idempotent create not offered: the repeated CreateActor failed: {_error_text(exc)}")
            return ""
        again = self.member(reply, "Actor", dict, "an ErpActor object")
        if again.get("ErpKey") == first:
            return f"the same IdempotencyKey returned {t} {first} again"
        self.warn(f"(ext) idempotent create not offered: the same IdempotencyKey created another {t} "
                  f"{again.get('ErpKey')!r} (the first was {first}); the protocol cannot delete it")
        return ""

    def check_save(self, t: str) -> str:
        st = self.state(t)
        if st.created is None:
            raise Skipped("needs CreateActor")
        marker = self.marker_field(st)
        if marker is None:
            raise Skipped(f"{t} has no writable Text field to change")
        key = st.created["ErpKey"]
        current = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                         "ErpKeys": [key], "FieldKeys": st.field_keys[:1]}))
        now = next((a for a in current if a.get("ErpKey") == key), None)  # as stored right now
        if now is None:
            raise Failed(f"GetActors no longer finds the created {t} {key}")
        old = now["LastModified"]
        old_key = self.stamp(now, t)[1]
        parent = now if now.get("ParentErpKey") else st.created
        new_value = self.sample_value(marker, uuid.uuid4().hex[:6] + "x")
        actor = {"ActorType": t, "ErpKey": key, "LastModified": old,
                 "ParentActorType": parent.get("ParentActorType") or "", "ParentErpKey": parent.get("ParentErpKey") or "",
                 "FieldValues": {marker["FieldKey"]: new_value}}
        before = dict(self.max_seen)
        reply = self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]})
        saved = self.actors_of(reply)
        problems = [p for a in saved for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        mine = [a for a in saved if a.get("ErpKey") == key]
        if not mine:
            raise Failed(f"the answer's Actors does not hold the saved {t} {key}")
        stored = mine[0]
        kind, new_key = self.stamp(stored, t)
        if new_key < old_key:
            raise Failed(f"LastModified went back: {old} before, {stored['LastModified']} after the save")
        best = before.get(kind)
        if best is not None and new_key < best[0]:
            raise Failed(f"after the save, {t} {key} has LastModified {stored['LastModified']}, earlier than "
                         f"{best[1]}: LastModified must be global and never decrease"
                         + (" (this looks like a per-record version counter)" if kind == "int" else ""))
        if new_key == old_key:  # legal while the connector's clock has not moved since the create
            self.note("a repeated LastModified is legal while the connector's clock has not moved (e.g. one-second "
                      "resolution); 'GetActorsByTimestamp paging under writes' re-saves an older actor")
        self.see(stored, t)
        field_key = marker["FieldKey"]
        if (stored.get("FieldValues") or {}).get(field_key, new_value) != new_value:
            raise Failed(f"the saved {field_key} is {_short(stored['FieldValues'][field_key])}, "
                         f"not {_short(new_value)}")
        found = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                       "ErpKeys": [key], "FieldKeys": [field_key]}))
        if not found or (found[0].get("FieldValues") or {}).get(field_key) != new_value:
            shown = _short((found[0].get("FieldValues") or {}).get(field_key)) if found else "nothing"
            raise Failed(f"GetActors reads back {field_key} = {shown} after saving {_short(new_value)}")
        feed = self.actors_of(self.by_timestamp(t, old, [field_key]))
        if key not in {a.get("ErpKey") for a in feed}:
            raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={old}) does not list {t} {key} after the save")
        moved = f"{old} → {stored['LastModified']}" if new_key != old_key else f"stayed {old}"
        return f"{field_key} changed; LastModified {moved}; the change feed lists it"
