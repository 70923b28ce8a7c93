"""Per actor type, searching: SearchActors with a blank text, SearchActorByParent (persons) and
SearchActorsAdvanced with one restriction."""

from __future__ import annotations

from typing import Any

from portal.connectors.conformance.results import Failed, Skipped
from portal.connectors.conformance.runner import CheckRunner, _TypeState
from portal.connectors.conformance.wording import MAX_LISTED, _listing, _short


class SearchChecks(CheckRunner):
    """Checks of the search methods."""

    def check_blank_search(self, t: str) -> str:
        st = self.state(t)
        self.require_connection()
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        reply = self.call("SearchActors", {"ConnectionGuid": self.guid, "ActorType": t, "SearchText": "",
                                           "FieldKeys": st.field_keys[:2]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        total = len(st.actors)
        if total and not actors:
            raise Failed(f"a blank SearchText found nothing, but there are {total} {t} actors: a blank search must "
                         "list all actors of the type")
        if len(actors) < total:
            self.warn(f"a blank SearchText listed {len(actors)} of the {total} {t} actors")
        return f"a blank SearchText listed {len(actors)} actor(s)"

    def check_by_parent(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        candidates = [a for a in st.actors + ([st.created] if st.created else [])
                      if isinstance(a.get("ParentErpKey"), str) and a["ParentErpKey"]]
        if not candidates:
            self._pending_parent_check = True
            raise Skipped(f"no {t} with a parent to search by")
        child = candidates[-1] if st.created in candidates else candidates[0]
        parent_type, parent_key = child.get("ParentActorType") or "", child["ParentErpKey"]
        reply = self.call("SearchActorByParent", {
            "ConnectionGuid": self.guid, "ActorType": t, "SearchText": "", "ParentActorType": parent_type,
            "ParentErpKey": parent_key, "FieldKeys": st.field_keys[:2]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        if child["ErpKey"] not in {a.get("ErpKey") for a in actors}:
            raise Failed(f"searching the children of {parent_type} {parent_key} left out {t} {child['ErpKey']}, "
                         "whose ParentErpKey it is")
        strangers = [str(a.get("ErpKey")) for a in actors if a.get("ParentErpKey") not in (None, "", parent_key)]
        if strangers:
            raise Failed(f"returned actors of another parent: {', '.join(strangers[:MAX_LISTED])}")
        return f"{len(actors)} {t} actor(s) under {parent_type} {parent_key}"

    def check_advanced(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.searchable is None or st.fields is None:
            raise Skipped("needs GetSearchableFields and GetActorsByTimestamp (all)")
        if not st.searchable:
            raise Skipped("no searchable fields")
        choice = self.restriction_sample(st)
        if choice is None:
            raise Skipped("no actor has a value in a searchable Text, List or Integer field")
        key, operator, value, actor = choice
        restriction = {"FieldKey": key, "Operator": operator, "Values": [value]}
        reply = self.call("SearchActorsAdvanced", {"ConnectionGuid": self.guid, "ActorType": t,
                                                   "Restrictions": [restriction], "FieldKeys": [key]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        if actor["ErpKey"] not in {a.get("ErpKey") for a in actors}:
            raise Failed(f"{key} {operator} {_short(value)} left out {t} {actor['ErpKey']}, whose {key} is "
                         f"{_short(value)}")

        def same(other: Any) -> bool:
            return other.casefold() == value.casefold() if isinstance(other, str) and isinstance(value, str) \
                else other == value

        odd = [str(a.get("ErpKey")) for a in actors if key in (a.get("FieldValues") or {})
               and not same(a["FieldValues"][key])]
        if odd:
            self.warn(f"also returned actors whose {key} is not {_short(value)}: {', '.join(odd[:MAX_LISTED])}")
        return f"{key} {operator} {_short(value)} → {len(actors)} actor(s)"

    @staticmethod
    def restriction_sample(st: _TypeState) -> tuple[str, str, Any, dict] | None:
        """(FieldKey, Operator, value, actor): a searchable Text (=), List (oneof) or Integer (=) field, in that
        order of preference and by Rank, with a value some actor has."""
        index = st.index
        searchable = sorted((k for k in st.searchable or [] if k in index), key=lambda k: index[k].get("Rank") or 0)
        for field_type, operator in (("Text", "="), ("List", "oneof"), ("Integer", "=")):
            for key in (k for k in searchable if index[k]["FieldType"] == field_type):
                for actor in st.actors or []:
                    value = (actor.get("FieldValues") or {}).get(key)
                    if field_type == "Integer":
                        usable = isinstance(value, int) and not isinstance(value, bool)
                    else:
                        usable = isinstance(value, str) and value.strip() == value and 0 < len(value) <= 100
                    if usable:
                        return key, operator, value, actor
        return None
