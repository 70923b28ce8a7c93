"""Per actor type, reading: the change feed GetActorsByTimestamp (everything, the LastModified format, FieldValues
types, the inclusive UpdatedOnOrAfter, paging with Limit/NextCursor) and GetActors by key."""

from __future__ import annotations

import math
import re
import uuid

from portal.connectors.client import ConnectorError
from portal.connectors.conformance.results import Failed, Skipped
from portal.connectors.conformance.runner import CheckRunner
from portal.connectors.conformance.validation import parse_last_modified
from portal.connectors.conformance.wording import MAX_LISTED, _json_type, _listing, _short

NOT_FOUND = "NOT_FOUND"  # error code: the key is unknown (the actor was deleted)


class ReadChecks(CheckRunner):
    """Checks of the change feed and of GetActors."""

    def check_all_actors(self, t: str) -> str:
        self.require_connection()
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        reply = self.by_timestamp(t, "", st.field_keys)
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        keys = [a.get("ErpKey") for a in actors]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            problems.append(f"ErpKey(s) listed twice: {', '.join(twice[:MAX_LISTED])}")
        if problems:
            raise Failed(f"{len(problems)} problem(s) with the actors: {_listing(problems)}")
        if reply.get("NextCursor"):
            raise Failed("answered a NextCursor although no Limit was sent: without Limit the answer must hold "
                         "every actor")
        st.actors = actors
        return f"{len(actors)} actor(s) with an empty UpdatedOnOrAfter"

    def check_last_modified(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to look at")
        kinds: dict[str, int] = {}
        problems = []
        values = []
        for actor in st.actors:
            try:
                kind, sort_key = parse_last_modified(actor.get("LastModified"))
            except ValueError as exc:
                problems.append(f"{actor.get('ErpKey')!r}: LastModified {exc}")
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            values.append(sort_key)
        if problems:
            raise Failed(f"LastModified must be an ISO-8601 UTC timestamp or a decimal integer: {_listing(problems)}")
        if len(kinds) > 1:
            raise Failed(f"LastModified mixes ISO-8601 timestamps ({kinds['iso']}) and integers ({kinds['int']}): "
                         "values of different actors cannot be compared")
        kind = next(iter(kinds))
        others = {other: k for other, k in self.kinds.items() if k != kind}
        if others:
            other, other_kind = next(iter(others.items()))
            raise Failed(f"{t} uses {'integers' if kind == 'int' else 'ISO-8601 timestamps'} for LastModified but "
                         f"{other} uses {'integers' if other_kind == 'int' else 'ISO-8601 timestamps'}: LastModified "
                         "must be comparable across all actors of the connection")
        st.kind = self.kinds[t] = kind
        for actor in st.actors:
            self.see(actor, t)
        if kind == "int" and len(values) >= 3 and max(values) < 1000 and len(set(values)) < len(values):
            self.warn(f"the values ({_short(sorted(set(values))[:8])}) are small integers shared by several actors: "
                      "this looks like a per-record version counter, which is not valid (the write checks can tell "
                      "for sure)")
        label = "ISO-8601 UTC timestamps" if kind == "iso" else "decimal integers"
        return f"{label}; newest {max(st.actors, key=lambda a: self.stamp(a, t)[1])['LastModified']}"

    def check_value_types(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to look at")
        problems, absent = self.value_problems(st.actors, st, st.field_keys)
        if problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(problems)}")
        if absent:
            self.warn(f"requested fields left out of FieldValues (read as blank): {', '.join(sorted(absent))}")
        return f"{len(st.actors)} actor(s), {len(st.field_keys)} field(s) each"

    def check_inclusive(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.kind is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        if not st.actors:
            raise Skipped(f"no {t} actors to ask for")
        ordered = sorted(st.actors, key=lambda a: self.stamp(a, t)[1])
        probes = [ordered[-1]] + ([ordered[len(ordered) // 2]] if len(ordered) > 2 else [])
        keys = st.field_keys[:1]
        done = []
        for probe in probes:
            since = probe["LastModified"]
            since_key = self.stamp(probe, t)[1]
            found = self.actors_of(self.by_timestamp(t, since, keys))
            got = {a.get("ErpKey") for a in found}
            if probe["ErpKey"] not in got:
                raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={since}) left out {t} {probe['ErpKey']} whose "
                             f"LastModified is exactly {since}: the comparison must be inclusive (on or after)")
            expected = {a["ErpKey"] for a in st.actors if self.stamp(a, t)[1] >= since_key}
            missing = sorted(expected - got)
            if missing:
                raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={since}) left out {len(missing)} actor(s) "
                             f"modified on or after it: {', '.join(missing[:MAX_LISTED])}")
            older = []
            for actor in found:
                try:
                    if parse_last_modified(actor.get("LastModified"))[1] < since_key:
                        older.append(str(actor.get("ErpKey")))
                except ValueError:
                    older.append(str(actor.get("ErpKey")))
            if older:
                self.warn(f"UpdatedOnOrAfter={since} also returned actors last modified before it: "
                          f"{', '.join(older[:MAX_LISTED])}")
            done.append(f"{since} → {len(found)}")
        return "UpdatedOnOrAfter = an actor's own LastModified includes it (" + ", ".join(done) + ")"

    def check_paging(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.kind is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        total = len(st.actors)
        if total < 2:
            raise Skipped(f"needs at least 2 {t} actors")
        limit = max(1, min(500, math.ceil(total / 3)))
        keys = st.field_keys[:1]
        reply = self.by_timestamp(t, "", keys, Limit=limit)
        page = self.actors_of(reply)
        cursor = reply.get("NextCursor")
        if cursor is None:
            if len(page) > limit:
                raise Skipped(f"(ext) not offered: Limit={limit} was ignored and all {len(page)} actors came in one "
                              "answer")
            if len(page) < total:
                raise Failed(f"with Limit={limit} it answered {len(page)} of {total} actors and no NextCursor: "
                             "the rest can never be fetched")
            raise Skipped(f"(ext) not offered: no NextCursor with Limit={limit}")
        seen: dict[str, int] = {}
        last_key = None
        pages = 0
        while True:
            pages += 1
            if len(page) > limit:
                raise Failed(f"page {pages} holds {len(page)} actors, more than Limit={limit}")
            for actor in page:
                key = actor.get("ErpKey")
                if key in seen:
                    raise Failed(f"{t} {key} came on page {seen[key]} and again on page {pages}: pages must cover "
                                 "each actor once")
                seen[key] = pages
                sort_key = self.stamp(actor, t)[1]
                if last_key is not None and sort_key < last_key:
                    raise Failed(f"page {pages} is not ordered by LastModified ({actor.get('LastModified')} comes "
                                 "after a later value)")
                last_key = sort_key
            if cursor is None:
                break
            if not isinstance(cursor, str):
                raise Failed(f"NextCursor is {_json_type(cursor)}, not a string or null")
            if pages > total + 2:
                raise Failed(f"still answering a NextCursor after {pages} pages of Limit={limit} for {total} actors")
            reply = self.by_timestamp(t, "", keys, Limit=limit, Cursor=cursor)
            page = self.actors_of(reply)
            cursor = reply.get("NextCursor")
        missing = sorted({a["ErpKey"] for a in st.actors} - set(seen))
        if missing:
            raise Failed(f"the pages left out {len(missing)} actor(s): {', '.join(missing[:MAX_LISTED])}")
        return f"{pages} page(s) of Limit={limit} covered all {total} actors once, in LastModified order"

    def unknown_key(self, t: str) -> str:
        known = {a.get("ErpKey") for a in self.state(t).actors or []}
        sample = next((k for k in known if isinstance(k, str) and k), "")
        match = re.match(r"^(.*?)(\d+)$", sample)
        for attempt in range(1, 100):
            if match:
                candidate = f"{match.group(1)}{int(match.group(2)) + 1_000_000_000 + attempt}"
            else:
                candidate = f"{sample or 'key'}-conformance-missing-{attempt}"
            if candidate not in known:
                return candidate
        return f"conformance-missing-{uuid.uuid4().hex}"

    def check_get_actors(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to ask for")
        known = st.actors[0]["ErpKey"]
        unknown = self.unknown_key(t)
        requested = st.field_keys[:2]
        body = {"ConnectionGuid": self.guid, "ActorType": t, "ErpKeys": [known, unknown], "FieldKeys": requested}
        try:
            reply = self.call("GetActors", body)
        except ConnectorError as exc:
            if exc.error_code != NOT_FOUND:
                raise
            # The contract lets a connector answer NOT_FOUND for an unknown key; leaving the key out is better.
            self.warn(f"[{known}, {unknown}] answered {NOT_FOUND} (accepted: the key is unknown) instead of leaving "
                      f"out the unknown key, so the known actor asked for in the same call was not returned either: "
                      "better leave unknown keys out")
            body["ErpKeys"] = [known]
            reply = self.call("GetActors", body)
            unknown = ""
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        keys = [a.get("ErpKey") for a in actors]
        if unknown and unknown in keys:
            raise Failed(f"returned an actor for the unknown key {unknown!r}: GetActors must leave out keys it does "
                         "not know (a left-out key tells the portal the actor no longer exists)")
        extra = [k for k in keys if k != known]
        if extra:
            raise Failed(f"returned actors that were not asked for: {', '.join(map(str, extra))}")
        if keys != [known]:
            raise Failed(f"left out {t} {known}, which GetActorsByTimestamp lists")
        values = actors[0].get("FieldValues") or {}
        type_problems, absent = self.value_problems(actors, st, requested)
        if type_problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(type_problems)}")
        if absent:
            self.warn(f"requested fields left out of FieldValues (read as blank): {', '.join(sorted(absent))}")
        extras = sorted(set(values) - set(requested))
        if extras:
            self.note(f"also sent fields not asked for (ignored by the portal): {', '.join(extras[:MAX_LISTED])}")
        asked = f"[{known}, {unknown}] → only {known}" if unknown else f"[{known}] → {known}"
        return f"{asked}, with FieldKeys {', '.join(requested) or '(none)'}"
