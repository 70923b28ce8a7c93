"""Protocol methods that read actors: GetActors, the searches (SearchActors, SearchActorByParent,
SearchActorsAdvanced) and the change feed GetActorsByTimestamp (keyset paging with ``Limit``/``Cursor``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from portal.connectors.builtin.demo.actor_documents import _doc_of, _field_plan
from portal.connectors.builtin.demo.protocol_connections import ConnectionMethods
from portal.connectors.builtin.demo.request_members import _decode_cursor, _encode_cursor, _limit, _string_list
from portal.connectors.builtin.demo.restrictions import _compile_restriction
from portal.connectors.builtin.demo.timestamps import parse_timestamp
from portal.connectors.service import ProtocolError

MAX_PAGE = 5000  # largest GetActorsByTimestamp page, whatever Limit asks for


class ReadMethods(ConnectionMethods):
    """GetActors, SearchActors, SearchActorByParent, SearchActorsAdvanced and GetActorsByTimestamp."""

    def GetActors(self, body: dict) -> dict:
        keys = _string_list(body, "ErpKeys")
        field_keys = self._field_keys(body)
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            rows = self._rows_by_key(conn, keys)
        actors = self._actor_docs([rows[key] for key in dict.fromkeys(keys)
                                   if key in rows and rows[key]["actor_type"] == actor_type], field_keys)
        return self._answer(config, Actors=actors)

    def SearchActors(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        text = body.get("SearchText") or ""
        if not isinstance(text, str):
            raise ProtocolError("SearchText must be a string.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            rows = self._search(conn, self._actor_type(body), text, limit=limit)
        return self._answer(config, Actors=self._actor_docs(rows, field_keys))

    def SearchActorByParent(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        text = body.get("SearchText") or ""
        parent_key = body.get("ParentErpKey")
        parent_type = body.get("ParentActorType") or None
        if not isinstance(text, str):
            raise ProtocolError("SearchText must be a string.", error_code="BAD_REQUEST")
        if not isinstance(parent_key, str) or not parent_key:
            raise ProtocolError("ParentErpKey is required.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            rows = self._search(conn, self._actor_type(body), text, parent_key=parent_key,
                                parent_type=parent_type, limit=limit)
        return self._answer(config, Actors=self._actor_docs(rows, field_keys))

    def SearchActorsAdvanced(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        restrictions = body.get("Restrictions") or []
        if not isinstance(restrictions, list) or not all(isinstance(r, Mapping) for r in restrictions):
            raise ProtocolError("Restrictions must be a list of SearchRestriction objects.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            tests = [_compile_restriction(actor_type, r) for r in restrictions]
            rows = self._search(conn, actor_type, "")
        plan = _field_plan(actor_type, field_keys)
        found = []
        for row in rows:
            fields = json.loads(row["fields"])
            if all(test(row, fields) for test in tests):
                found.append(_doc_of(row, plan, fields))
                if limit and len(found) >= limit:
                    break
        return self._answer(config, Actors=found)

    def GetActorsByTimestamp(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        since_text = body.get("UpdatedOnOrAfter") or ""
        cursor = body.get("Cursor") or None
        if not isinstance(since_text, str) or (cursor is not None and not isinstance(cursor, str)):
            raise ProtocolError("UpdatedOnOrAfter and Cursor must be strings.", error_code="BAD_REQUEST")
        try:
            since = parse_timestamp(since_text) if since_text.strip() else None
        except ValueError:
            raise ProtocolError(f"UpdatedOnOrAfter {since_text!r} is not an ISO-8601 timestamp.",
                                error_code="BAD_REQUEST") from None
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            sql = "SELECT * FROM actors WHERE deleted = 0 AND actor_type = ?"
            params: list = [actor_type]
            if since is not None:
                sql += " AND last_modified >= ?"
                params.append(since)
            if cursor:
                after_stamp, after_key = _decode_cursor(cursor, actor_type)
                sql += " AND (last_modified, erp_key) > (?, ?)"
                params += [after_stamp, after_key]
            sql += " ORDER BY last_modified, erp_key"
            page = min(limit, MAX_PAGE) if limit else None
            if page:
                sql += " LIMIT ?"
                params.append(page + 1)
            rows = conn.execute(sql, params).fetchall()
        next_cursor = None
        if page and len(rows) > page:
            rows = rows[:page]
            next_cursor = _encode_cursor(actor_type, rows[-1]["last_modified"], rows[-1]["erp_key"])
        return self._answer(config, Actors=self._actor_docs(rows, field_keys), NextCursor=next_cursor)
