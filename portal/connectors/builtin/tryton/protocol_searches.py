"""Protocol methods that search actors: SearchActors, SearchActorByParent and SearchActorsAdvanced, whose
restrictions become Tryton domains (and, for parts of a person's name, checks made after the query). Answers are
capped at MAX_RESULTS when the request gives no Limit."""

from __future__ import annotations

from portal.connectors.builtin.tryton.actor_documents import ActorDocuments
from portal.connectors.builtin.tryton.catalogue import (
    EMPLOYEE_OF,
    FIELD_INDEX,
    MAX_RESULTS,
    NEGATIVE,
    PERSON,
    PROJECT,
    SEARCH,
    TEXT_OPERATORS,
)
from portal.connectors.builtin.tryton.connections import _Connection
from portal.connectors.builtin.tryton.errors import _protocol
from portal.connectors.builtin.tryton.request_members import _actor_type, _field_keys, _int_keys, _limit
from portal.connectors.builtin.tryton.values import _like_patterns, _text_match, split_person_name
from portal.connectors.protocol import ok_response, warning_response
from portal.connectors.service import ProtocolError


class SearchMethods(ActorDocuments):
    """SearchActors, SearchActorByParent and SearchActorsAdvanced."""

    def _answer(self, conn, actor_type, ids: list[int], keys, limit: int | None, post=None) -> dict:
        snaps = self._read(conn, actor_type, ids)
        ordered = [snaps[i] for i in ids if i in snaps]
        if post is not None:
            ordered = [s for s in ordered if post(s)]
        capped = limit is None and len(ordered) >= MAX_RESULTS
        if limit is not None:
            ordered = ordered[:limit]
        actors = self._actors(conn, actor_type, ordered[:MAX_RESULTS], keys)
        if capped:
            return warning_response(f"Only the first {MAX_RESULTS} matches are shown; refine the search.",
                                    Actors=actors)
        return ok_response(Actors=actors)

    def _text_domain(self, actor_type: str, text: str) -> list:
        text = (text or "").strip()
        if not text:
            return []
        code_field = "number" if actor_type == PROJECT else "code"
        leaves = [[f, "ilike", p] for f in ("name", code_field) for p in _like_patterns("contains", text)]
        return [["OR", *leaves]]

    @_protocol
    def SearchActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, self._text_domain(actor_type, body.get("SearchText") or ""),
                               limit=limit if limit is not None else MAX_RESULTS)
        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit)

    @_protocol
    def SearchActorByParent(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        if actor_type != PERSON:
            raise ProtocolError("Only persons have a parent in the Tryton connector.",
                                error_code="UNSUPPORTED_ACTOR_TYPE")
        parent_ids = _int_keys([body.get("ParentErpKey")])
        if not parent_ids:
            return ok_response(Actors=[])
        domain = self._parent_domain(conn, parent_ids) + self._text_domain(actor_type, body.get("SearchText") or "")
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, domain, limit=limit if limit is not None else MAX_RESULTS)
        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit)

    def _parent_domain(self, conn: _Connection, parent_ids: list[int], negate: bool = False) -> list:
        type_id = self._refs(conn).relation_types.get(EMPLOYEE_OF)
        return [["relations", "not where" if negate else "where", [["type", "=", type_id],
                                                                   ["to", "in", parent_ids]]]]

    @_protocol
    def SearchActorsAdvanced(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        restrictions = body.get("Restrictions") or []
        if not isinstance(restrictions, list):
            raise ProtocolError("Restrictions must be a list.", error_code="BAD_REQUEST")
        domain: list = []
        post: list = []
        for restriction in restrictions:
            leaves, check = self._restriction(conn, actor_type, restriction)
            domain += leaves
            if check is not None:
                post.append(check)
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, domain, limit=None if post else (limit or MAX_RESULTS))

        def keep(snap):
            return all(check(snap) for check in post)

        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit, keep if post else None)

    def _restriction(self, conn: _Connection, actor_type: str, restriction) -> tuple[list, object]:
        if not isinstance(restriction, dict):
            raise ProtocolError("Each restriction must be an object.", error_code="BAD_REQUEST")
        key, operator = restriction.get("FieldKey"), str(restriction.get("Operator") or "").strip()
        values = restriction.get("Values")
        if values is None:
            values = []
        if not isinstance(values, list):
            values = [values]
        values = ["" if v is None else v for v in values]
        op = operator.lower() if operator.lower() in TEXT_OPERATORS else operator
        if key == "ParentErpKey":
            if actor_type != PERSON:
                raise ProtocolError("ParentErpKey restricts persons only.", error_code="UNSUPPORTED_SEARCH")
            negate = op in ("notoneof", "!=", "isnot")
            return self._parent_domain(conn, _int_keys(values), negate), None
        if key == "ParentActorType":
            if actor_type != PERSON:
                raise ProtocolError("ParentActorType restricts persons only.", error_code="UNSUPPORTED_SEARCH")
            refs = self._refs(conn)
            cats = [refs.category_ids[v] for v in values if v in refs.category_ids]
            type_id = refs.relation_types.get(EMPLOYEE_OF)
            where = "not where" if op in ("notoneof", "!=", "isnot") else "where"
            return [["relations", where, [["type", "=", type_id], ["to.categories", "in", cats]]]], None
        spec = SEARCH[actor_type].get(key)
        if spec is None:
            raise ProtocolError(f"{actor_type} cannot be searched by {key!r}.",
                                f"searchable: {', '.join(SEARCH[actor_type])}", "UNSUPPORTED_SEARCH")
        field_type = FIELD_INDEX[actor_type][key]["FieldType"]
        if spec[0] == "name_part":
            if op not in TEXT_OPERATORS or not values:
                raise ProtocolError(f"Operator {operator!r} needs a value and is not valid for {key}.",
                                    error_code="UNSUPPORTED_SEARCH")
            part = 0 if spec[1] == "FIRSTNAME" else 1
            text = str(values[0])
            if op == "between":
                low, high = (str(values[0]).casefold(), str(values[1] if len(values) > 1 else values[0]).casefold())

                def check(snap, part=part, low=low, high=high):
                    return low <= (split_person_name(snap.get("name"))[part] or "").casefold() <= high

                return [], check
            leaves = []
            if op in ("=", "begins", "contains", "ends") and text:
                leaves = [["OR", *[["name", "ilike", p] for p in _like_patterns("contains", text)]]]

            def check(snap, part=part, op=op, text=text):
                return _text_match(op, split_person_name(snap.get("name"))[part], text)

            return leaves, check
        if spec[0] == "status":
            if op not in ("oneof", "notoneof", "=", "!=", "isnot"):
                raise ProtocolError(f"Operator {operator!r} is not valid for {key}.", error_code="UNSUPPORTED_SEARCH")
            refs = self._refs(conn)
            ids = [s["id"] for s in refs.statuses if self._state_key(conn, s["id"]) in set(map(str, values))]
            return [["status", "not in" if op in ("notoneof", "!=", "isnot") else "in", ids]], None
        groups, negate = self._conditions(key, field_type, op, operator, values)
        if spec[0] == "field":
            path = spec[1]
            positive = self._domain(path, groups)
            if not negate:
                return positive, None
            # NOT(match): Tryton's negative operators also leave out empty values, so add them back
            negative = [[path, self._NEGATED[o], v] for group in groups for o, v in group]
            return [["OR", [path, "=", None], negative]], None
        _, o2m, extra, path = spec
        return [[o2m, "not where" if negate else "where", extra + self._domain(path, groups)]], None

    _NEGATED = {"ilike": "not ilike", "in": "not in"}

    @staticmethod
    def _domain(path: str, groups: list[list[tuple]]) -> list:
        """AND of groups, each an OR of (operator, value) on ``path`` → Tryton domain."""
        out = []
        for group in groups:
            leaves = [[path, o, v] for o, v in group]
            out.append(leaves[0] if len(leaves) == 1 else ["OR", *leaves])
        return out

    @staticmethod
    def _conditions(key: str, field_type: str, op: str, operator: str, values: list) -> tuple[list, bool]:
        """Operator + values → (AND-list of OR-lists of (tryton operator, value), negate). Negative protocol
        operators come back as their positive form with negate=True."""

        def need(count):
            if len(values) < count:
                raise ProtocolError(f"Operator {operator!r} on {key} needs {count} value(s).",
                                    error_code="UNSUPPORTED_SEARCH")

        if field_type == "List" and op in ("oneof", "=", "notoneof", "!=", "isnot"):
            keys = [str(v).upper() if key == "COUNTRY" else str(v) for v in values]
            return [[("in", keys)]], op in ("notoneof", "!=", "isnot")
        if field_type != "List" and op in TEXT_OPERATORS:
            need(1)
            if op == "between":
                need(2)
                return [[(">=", str(values[0]))], [("<=", str(values[1]))]], False
            patterns = _like_patterns(NEGATIVE.get(op, op), str(values[0]))
            return [[("ilike", p) for p in patterns]], op in NEGATIVE
        raise ProtocolError(f"Operator {operator!r} is not valid for {key} ({field_type}).",
                            error_code="UNSUPPORTED_SEARCH")
