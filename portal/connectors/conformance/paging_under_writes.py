"""Per actor type, "GetActorsByTimestamp paging under writes": page the feed and re-save an actor between two pages
(keyset paging skips nothing, offset paging shifts), then restore what the re-save changed."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from portal.connectors.client import ConnectorError
from portal.connectors.conformance.results import FAIL, SKIP, Failed, Skipped
from portal.connectors.conformance.wording import MAX_LISTED, _error_text, _json_type, _short
from portal.connectors.conformance.writes import WriteChecks

FEED_WINDOW = 6  # newest actors the "paging under writes" check pages through (more when LastModified values tie)
WRITE_PAGE_LIMIT = 2  # its page size


class PagingUnderWritesChecks(WriteChecks):
    """The paging-under-writes check and its re-save and restore (it writes like the write checks)."""

    def check_paging_under_writes(self, t: str) -> str:
        """Page the feed with a small Limit and re-save an actor of page 1 before page 2: does every actor that was
        in the feed before the write still come? Keyset paging: yes. Offset paging (legal): the re-saved actor moves
        to the end and the rest shift, so one is skipped. Information only; the portal reads the whole feed before
        writing. A re-save whose LastModified stays behind stamps handed out before (a change the feed would never
        list) FAILs."""
        st = self.state(t)
        if st.actors is None or st.kind is None or st.fields is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        paging = self.result_of(f"{t}: GetActorsByTimestamp paging")
        if paging is not None and paging.status == FAIL:
            raise Skipped("needs GetActorsByTimestamp paging")
        if paging is not None and paging.status == SKIP and paging.reason.startswith("(ext) not offered"):
            raise Skipped(f"the connector does not page GetActorsByTimestamp ({paging.reason})")
        saving = self.result_of(f"{t}: SaveActors")
        if saving is not None and saving.status == FAIL:
            raise Skipped("needs SaveActors")
        field_meta = self.marker_field(st) or next((f for f in st.fields if self.writable(f)), None)
        if field_meta is None:
            raise Skipped(f"{t} has no writable field (read-only type): nothing to re-save")
        known = {a.get("ErpKey"): a for a in st.actors}
        if st.created is not None:
            known[st.created.get("ErpKey")] = st.created
        if len(known) < 3:
            raise Skipped(f"needs at least 3 {t} actors (there are {len(known)})")
        self.require_connection()
        ordered = sorted(known.values(), key=lambda a: self.stamp(a, t)[1])
        since = ordered[-FEED_WINDOW]["LastModified"] if len(ordered) > FEED_WINDOW else ""
        field_key = field_meta["FieldKey"]
        keys = [field_key]
        before = list(dict.fromkeys(a.get("ErpKey") for a in self.actors_of(self.by_timestamp(t, since, keys))))
        if len(before) < 3:
            raise Skipped(f"needs at least 3 {t} actors in the feed (UpdatedOnOrAfter={since or '(all)'} lists "
                          f"{len(before)})")
        limit = WRITE_PAGE_LIMIT if len(before) <= 20 * WRITE_PAGE_LIMIT else math.ceil(len(before) / 20)
        reply = self.by_timestamp(t, since, keys, Limit=limit)
        page = self.actors_of(reply)
        cursor = reply.get("NextCursor")
        if cursor is None:
            if len(page) > limit:
                raise Skipped(f"(ext) not offered: Limit={limit} was ignored")
            raise Skipped(f"(ext) not offered: no NextCursor with Limit={limit}")
        if not page:
            raise Failed(f"with Limit={limit} page 1 is empty but has a NextCursor")
        target = page[0]
        seen = [a.get("ErpKey") for a in page]
        restore = self.resave(t, target["ErpKey"], field_meta)
        pages = 1
        try:
            while cursor is not None:
                if not isinstance(cursor, str):
                    raise Failed(f"NextCursor is {_json_type(cursor)}, not a string or null")
                if pages > len(before) + 5:
                    raise Failed(f"still answering a NextCursor after {pages} pages of Limit={limit} for "
                                 f"{len(before)} actors")
                reply = self.by_timestamp(t, since, keys, Limit=limit, Cursor=cursor)
                seen += [a.get("ErpKey") for a in self.actors_of(reply)]
                cursor = reply.get("NextCursor")
                pages += 1
        finally:
            if restore is not None:
                restore()
        skipped = [k for k in before if k not in seen]
        where = (f"re-saved {t} {target['ErpKey']} between page 1 and 2 of Limit={limit} from "
                 f"UpdatedOnOrAfter={since or '(all)'}")
        if seen.count(target["ErpKey"]) > 1:
            self.note("the re-saved actor came again on a later page (it has a new LastModified)")
        if not skipped:
            return (f"feed is stable under writes between pages (keyset-like): {where}; all {len(before)} actors "
                    f"came in {pages} pages")
        return (f"feed shifts under writes between pages (offset-like paging): {where}; {len(skipped)} of "
                f"{len(before)} actors skipped ({', '.join(map(str, skipped[:MAX_LISTED]))}) — the portal copes "
                "(it reads the whole feed before writing), but other clients may not")

    def resave(self, t: str, key: str, field_meta: dict) -> Callable[[], None] | None:
        """SaveActors for ``key`` with its current value of ``field_meta`` (no change). When that writes nothing
        (LastModified unchanged: a connector may skip a save that changes nothing), a harmless change to the Text
        field instead. Returns the function that restores the value (None when nothing was changed)."""
        field_key = field_meta["FieldKey"]
        current = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                         "ErpKeys": [key], "FieldKeys": [field_key]}))
        read = next((a for a in current if a.get("ErpKey") == key), None)
        if read is None:
            raise Skipped(f"{t} {key} is gone (GetActors no longer finds it)")
        known_value = field_key in (read.get("FieldValues") or {})  # left out: the kit cannot know (nor restore) it
        original = (read.get("FieldValues") or {}).get(field_key)
        read_stamp = self.stamp(read, t)[1]

        def save(last_modified: str, value: Any) -> tuple[dict, str]:
            """(the actor as stored, a contract problem with its LastModified or "")."""
            actor = {"ActorType": t, "ErpKey": key, "LastModified": last_modified,
                     "ParentActorType": read.get("ParentActorType") or "",
                     "ParentErpKey": read.get("ParentErpKey") or "",
                     "FieldValues": {field_key: value} if known_value else {}}
            best = dict(self.max_seen)
            answer = self.actors_of(self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]}))
            stored = next((a for a in answer if a.get("ErpKey") == key), None)
            if stored is None:
                return {**actor, "LastModified": last_modified}, f"the SaveActors answer does not hold {t} {key}"
            kind, stamp = self.stamp(stored, t)
            self.see(stored, t)
            if stamp < self.stamp(actor, t)[1]:
                return stored, (f"re-saving {t} {key}: LastModified went back from {last_modified} to "
                                f"{stored['LastModified']}")
            newest = best.get(kind)
            if newest is not None and stamp < newest[0] and (stamp != read_stamp or value != original):
                return stored, (f"SaveActors {'changed' if value != original else 're-saved'} {field_key} of {t} "
                                f"{key}, but its LastModified is {stored['LastModified']}, older than {newest[1]}: the "
                                "change feed would never list this write (LastModified must be global and never "
                                "decrease)")
            return stored, ""

        stored, problem = save(read["LastModified"], original)
        if problem:
            raise Failed(problem)
        if self.stamp(stored, t)[1] > read_stamp:
            self.note(f"{field_key} re-saved unchanged: LastModified {read['LastModified']} → "
                      f"{stored['LastModified']}")
            return None
        if field_meta["FieldType"] != "Text":
            raise Skipped(f"re-saving {t} {key} unchanged left its LastModified at {read['LastModified']}, and {t} "
                          "has no writable Text field for a harmless change")
        if not known_value:
            raise Skipped(f"re-saving {t} {key} unchanged left its LastModified at {read['LastModified']}, and GetActors "
                          f"left out its {field_key}, so a change could not be undone")
        changed, problem = save(stored["LastModified"], self.sample_value(field_meta, uuid.uuid4().hex[:6] + "w"))
        if problem:
            self.restore_value(t, key, read, field_key, original, changed)
            raise Failed(problem)
        if self.stamp(changed, t)[1] == read_stamp:  # legal (a clock at rest), but then nothing moved in the feed
            self.restore_value(t, key, read, field_key, original, changed)
            raise Skipped(f"cannot tell: changing {field_key} of {t} {key} left its LastModified at "
                          f"{read['LastModified']} (a repeated value: the connector's clock has not moved), so it kept "
                          "its place in the feed; the change was undone")
        self.note(f"re-saving {field_key} unchanged left LastModified as it was, so {field_key} was changed (and "
                  "restored after the read)")
        return lambda: self.restore_value(t, key, read, field_key, original, changed)

    def restore_value(self, t: str, key: str, read: dict, field_key: str, original: Any, changed: dict) -> None:
        """Put ``original`` back into ``field_key`` of the actor (``changed``: the actor as the change left it)."""
        actor = {"ActorType": t, "ErpKey": key, "LastModified": changed["LastModified"],
                 "ParentActorType": read.get("ParentActorType") or "", "ParentErpKey": read.get("ParentErpKey") or "",
                 "FieldValues": {field_key: original}}
        try:
            answer = self.actors_of(self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]}))
        except ConnectorError as exc:
            raise Failed(f"could not restore {field_key} of {t} {key} to {_short(original)}: {_error_text(exc)} — "
                         "restore it by hand") from None
        stored = next((a for a in answer if a.get("ErpKey") == key), None)
        value = (stored.get("FieldValues") or {}).get(field_key, original) if stored else original
        if value != original:
            raise Failed(f"restoring {field_key} of {t} {key} stored {_short(value)}, not {_short(original)} — "
                         "restore it by hand")
        if stored is not None:
            self.see(stored, t)
