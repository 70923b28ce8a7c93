"""The ERP's own side, not the protocol: what the /demo-erp/ pages, the ``flask demo-erp`` commands, the tests and
the benchmarks do to the Demo ERP directly (create, edit, delete, browse, count, reset). Every write bumps
LastModified, so it reaches the portal through the change feed like an edit made in a real ERP."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from portal.connectors.builtin.demo.catalogue import ACTOR_TYPES, NUMBER_FIELD, PARENT_TYPES
from portal.connectors.builtin.demo.storage import _BY_NAME, DemoErpStorage
from portal.connectors.builtin.demo.values import DemoErpValidationError


class ErpSide(DemoErpStorage):
    """Direct access to the Demo ERP's data, as the ERP itself (its pages, CLI, tests and benchmarks)."""

    def list_items(self, list_name: str) -> dict[str, str]:
        self._ensure_ready()
        return dict(self._lists.get(list_name, {}))

    def bulk_create(self, actor_type: str, rows: Sequence[Mapping],
                    parent: tuple[str, str] | Sequence[tuple[str, str]] | None = None) -> list[str]:
        """Create many actors in one transaction (executemany) as the ERP itself: ReadOnly fields may be set.

        ``parent`` is one (type, key) for every row or a sequence with one per row; persons need one.
        Raises DemoErpValidationError (nothing written) when a row is invalid. Returns the new ErpKeys.
        """
        if actor_type not in ACTOR_TYPES:
            raise DemoErpValidationError({"": f"unknown actor type {actor_type!r}"})
        self._ensure_ready()
        if parent is None or (len(parent) == 2 and all(isinstance(p, str) for p in parent)):
            parents: list = [tuple(parent) if parent else None] * len(rows)
        else:
            parents = [tuple(p) if p else None for p in parent]
            if len(parents) != len(rows):
                raise DemoErpValidationError({"": "parent must give one (type, key) per row"})
        clean_rows, errors = [], {}
        for number, values in enumerate(rows, start=1):
            clean, problems = self._clean(actor_type, values, include_read_only=True)
            self._add_missing_mandatory(problems, actor_type, clean)
            errors.update({f"{number}:{k}": f"row {number}: {m}" for k, m in problems.items()})
            clean_rows.append(clean)
        with self._write() as conn:
            if actor_type == "Person":
                wanted = {p[1] for p in parents if p}
                found = self._rows_by_key(conn, list(wanted))
                for number, p in enumerate(parents, start=1):
                    row = found.get(p[1]) if p else None
                    if row is None or row["actor_type"] not in PARENT_TYPES or (p[0] and p[0] != row["actor_type"]):
                        errors[f"{number}:ParentErpKey"] = f"row {number}: needs an existing customer/supplier parent"
            else:
                parents = [None] * len(rows)
            if errors:
                raise DemoErpValidationError(errors)
            return self._insert(conn, actor_type, clean_rows, parents)

    def create(self, actor_type: str, values: Mapping, parent: tuple[str, str] | None = None) -> dict:
        """Create one actor as a user of the ERP would (the /demo-erp/ pages): ReadOnly fields are ignored,
        the number is assigned. Returns the actor (protocol shape); raises DemoErpValidationError."""
        if actor_type not in ACTOR_TYPES:
            raise DemoErpValidationError({"": f"unknown actor type {actor_type!r}"})
        self._ensure_ready()
        with self._write() as conn:
            fields, errors = self._clean(actor_type, values, include_read_only=False)
            self._add_missing_mandatory(errors, actor_type, fields)
            if actor_type == "Person":
                try:
                    parent = self._check_parent(conn, *(parent or (None, None)))
                except ValueError as exc:
                    errors["ParentErpKey"] = str(exc)
            else:
                parent = None
            if errors:
                raise DemoErpValidationError(errors)
            key = self._insert(conn, actor_type, [fields], [parent])[0]
            return self._actor_doc(self._rows_by_key(conn, [key])[key])

    def update_fields(self, actor_type: str, erp_key: str, values: Mapping, *,
                      include_read_only: bool = False) -> dict:
        """Edit one actor as the ERP (the /demo-erp/ pages and tests); bumps LastModified.

        Returns the actor as now stored (protocol shape). Raises KeyError for an unknown/deleted actor and
        DemoErpValidationError for invalid values. The ERP-assigned number (NUMBER1/NUMBER) never changes.
        """
        self._ensure_ready()
        with self._write() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
            if row is None or row["actor_type"] != actor_type:
                raise KeyError(erp_key)
            clean, errors = self._clean(actor_type, values, include_read_only=include_read_only)
            clean.pop(NUMBER_FIELD.get(actor_type, ""), None)
            merged = {**json.loads(row["fields"]), **clean}
            self._add_missing_mandatory(errors, actor_type, merged)
            if errors:
                raise DemoErpValidationError(errors)
            self._update(conn, [(erp_key, actor_type, (row["parent_type"], row["parent_key"]), merged)])
            return self._actor_doc(self._rows_by_key(conn, [erp_key])[erp_key])

    def touch(self, actor_type: str, erp_key: str) -> str:
        """Bump an actor's LastModified without changing it; returns the new LastModified."""
        return self.update_fields(actor_type, erp_key, {})["LastModified"]

    def delete_actor(self, actor_type: str, erp_key: str) -> bool:
        """Soft-delete: afterwards every method leaves the actor out. False when it did not exist."""
        self._ensure_ready()
        with self._write() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
            if row is None or row["actor_type"] != actor_type:
                return False
            stamp = self._allocate_timestamps(conn, 1)
            conn.execute("UPDATE actors SET deleted = 1, last_modified = ? WHERE erp_key = ?", (stamp, erp_key))
            return True

    def get_actor(self, actor_type: str, erp_key: str) -> dict | None:
        """One live actor with every field (protocol shape), or None."""
        with self._read() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
        if row is None or row["actor_type"] != actor_type:
            return None
        return self._actor_doc(row)

    def browse(self, actor_type: str, search: str = "", *, offset: int = 0, limit: int = 25,
               parent_key: str | None = None) -> tuple[int, list[dict]]:
        """(total matches, one page of actors) for the /demo-erp/ pages, by name."""
        where, params = self._where(actor_type, search, parent_key=parent_key)
        with self._read() as conn:
            total = conn.execute(f"SELECT count(*) FROM actors WHERE {where}", params).fetchone()[0]
            rows = conn.execute(f"SELECT * FROM actors WHERE {where} ORDER BY {_BY_NAME} LIMIT ? OFFSET ?",
                                [*params, max(limit, 0), max(offset, 0)]).fetchall()
        return total, self._actor_docs(rows)

    def display_names(self, erp_keys: Iterable[str]) -> dict[str, str]:
        """ErpKey -> display name of live actors (for parent columns on the pages)."""
        with self._read() as conn:
            rows = self._rows_by_key(conn, list(erp_keys))
        return {key: row["display_name"] for key, row in rows.items()}

    def counts(self) -> dict[str, int]:
        """Live actors per type."""
        with self._read() as conn:
            rows = conn.execute("SELECT actor_type, count(*) FROM actors WHERE deleted = 0 GROUP BY actor_type")
            found = {row[0]: row[1] for row in rows}
        return {actor_type: found.get(actor_type, 0) for actor_type in ACTOR_TYPES}

    def reset(self, *, seed: bool | None = None) -> None:
        """Empty the Demo ERP (actors, connections, idempotency keys) and seed it again.

        ErpKeys restart at C10001 …, so a reseeded ERP holds the same keys for the same seed records; the
        LastModified high-water mark is kept, so LastModified still never goes back.
        """
        if seed is not None:
            self.seed = seed
        self._ensure_ready()
        with self._write() as conn:
            for table in ("actors", "connections", "idempotency_keys", "lists"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM meta WHERE key LIKE 'seq:%' OR key = 'seeded'")
            self._seed(conn)
        self._load_lists()
