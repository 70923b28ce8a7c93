"""Per actor type, what the connector says about the type: GetSupportedActorTypeFields, GetSearchableFields, and
the lists its List fields name (GetList/GetListItems)."""

from __future__ import annotations

from portal.connectors.conformance.results import Failed, Skipped
from portal.connectors.conformance.runner import CheckRunner
from portal.connectors.conformance.validation import metadata_problems
from portal.connectors.conformance.wording import MAX_LISTED, _listing, _short
from portal.connectors.protocol import SPECIAL_SEARCH_KEYS


class CatalogueChecks(CheckRunner):
    """Checks of an actor type's fields, searchable fields and lists."""

    def check_fields(self, t: str) -> str:
        self.require_connection()
        reply = self.call("GetSupportedActorTypeFields", {"ConnectionGuid": self.guid, "ActorType": t})
        fields = self.member(reply, "FieldMetaDataObjects", list, "an array of FieldMetadataInfo")
        problems = metadata_problems(fields, "FieldMetaDataObjects")
        if problems:
            raise Failed(f"{len(problems)} problem(s): {_listing(problems)}")
        self.state(t).fields = fields
        if not fields:
            self.warn("the actor type has no fields")
        kinds = sorted({f["FieldType"] for f in fields})
        return f"{len(fields)} field(s) ({', '.join(kinds)})"

    def check_searchable(self, t: str) -> str:
        self.require_connection()
        st = self.state(t)
        reply = self.call("GetSearchableFields", {"ConnectionGuid": self.guid, "ActorType": t})
        items = self.member(reply, "Items", list, "an array of FieldKeys")
        if not all(isinstance(i, str) for i in items):
            raise Failed(f"Items must be FieldKeys (strings): {_short(items)}")
        if st.fields is None:
            st.searchable = items
            raise Skipped("needs GetSupportedActorTypeFields to compare the keys")
        unknown = [i for i in items if i not in st.index and i not in SPECIAL_SEARCH_KEYS]
        if unknown:
            raise Failed(f"searchable fields that are not fields of {t}: {', '.join(unknown)}")
        st.searchable = items
        return ", ".join(items) if items else "no searchable fields"

    def check_lists(self, t: str) -> str:
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        self.require_connection()
        list_fields = [f for f in st.fields if f["FieldType"] == "List"]
        if not list_fields:
            raise Skipped("no field of type List")
        done = []
        for name in dict.fromkeys(f["ListName"] for f in list_fields):
            if name in self.list_checked_by:
                done.append(f"{name} (checked with {self.list_checked_by[name]})")
                continue
            items = self.fetch_list(name)
            wanted = list(items)[:3]
            missing_key = next(k for k in (f"conformance-missing-{i}" for i in range(1, 100)) if k not in items)
            reply = self.call("GetListItems", {"ConnectionGuid": self.guid, "ListName": name,
                                               "ListItemKeys": wanted + [missing_key]})
            got = self.list_items(reply)
            lost = [k for k in wanted if k not in got]
            if lost:
                raise Failed(f"GetListItems({name}) left out {', '.join(lost)}, which GetList lists")
            differ = [k for k in wanted if got[k] != items[k]]
            if differ:
                raise Failed(f"GetListItems({name}) answered other texts than GetList for {', '.join(differ)}")
            if missing_key in got:
                self.warn(f"GetListItems({name}) answered a text for the unknown key {missing_key!r}")
            stray: set[str] = set()
            for meta in (f for f in list_fields if f["ListName"] == name):
                for actor in st.actors or []:
                    value = (actor.get("FieldValues") or {}).get(meta["FieldKey"])
                    if isinstance(value, str) and value and value not in items:
                        stray.add(value)
            if stray:
                self.warn(f"{t} values that are not keys of the list {name}: {', '.join(sorted(stray)[:MAX_LISTED])}")
            self.list_checked_by[name] = t
            done.append(f"{name} ({len(items)} items)")
        return ", ".join(done)
