"""Actors as Tryton stores them, read and answered: parties (with their addresses, contact mechanisms,
identifiers and relations, and the LastModified over all of them) and project works, turned into FieldValues and
ErpActor documents (with the parent of a person)."""

from __future__ import annotations

from portal.connectors.builtin.tryton.catalogue import (
    CUSTOMER,
    EMPLOYEE_OF,
    MECHANISMS,
    PARTY_FIELDS,
    PERSON,
    PROJECT,
    STATE_DONE,
    STATE_OPENED,
    SUPPLIER,
    WORK_FIELDS,
)
from portal.connectors.builtin.tryton.connections import TrytonConnections, _Connection
from portal.connectors.builtin.tryton.request_members import _chunks
from portal.connectors.builtin.tryton.values import iso_utc, split_person_name


class ActorDocuments(TrytonConnections):
    """Reading parties and works from Tryton and answering them as ErpActor documents."""

    def _read_parties(self, conn: _Connection, ids: list[int]) -> dict[int, dict]:
        client = conn.client
        refs = self._refs(conn)
        snaps: dict[int, dict] = {}
        for chunk in _chunks(ids):
            rows = client.read("party.party", chunk, PARTY_FIELDS, context={"active_test": False})
            by_id = {row["id"]: row for row in rows}
            addr_ids = [i for row in rows for i in row["addresses"]]
            mech_ids = [i for row in rows for i in row["contact_mechanisms"]]
            ident_ids = [i for row in rows for i in row["identifiers"]]
            everything = {"active_test": False}  # archived children count for LastModified, not for values
            addresses = {r["id"]: r for r in client.read(
                "party.address", addr_ids, ["street", "postal_code", "city", "country", "subdivision", "active",
                                            "last_modified_at", "_timestamp"], context=everything)}
            mechanisms = {r["id"]: r for r in client.read(
                "party.contact_mechanism", mech_ids, ["type", "value", "active", "last_modified_at", "_timestamp"],
                context=everything)}
            identifiers = {r["id"]: r for r in client.read(
                "party.identifier", ident_ids, ["type", "code", "active", "last_modified_at", "_timestamp"],
                context=everything)}
            relations: dict[int, list[dict]] = {}
            for rel in client.search_read("party.relation.all", [["from_", "in", chunk]],
                                          ["from_", "to", "type", "active"],
                                          order=[["id", "ASC"]], context=everything):
                relations.setdefault(rel["from_"], []).append(rel)
            for party_id in chunk:
                row = by_id.get(party_id)
                if row is None:
                    continue
                snap = dict(row)
                children = {
                    "_addresses": [addresses[i] for i in row["addresses"] if i in addresses],
                    "_mechanisms": [mechanisms[i] for i in row["contact_mechanisms"] if i in mechanisms],
                    "_identifiers": [identifiers[i] for i in row["identifiers"] if i in identifiers],
                    "_relations": relations.get(party_id, []),
                }
                # party.relation.all is a SQL view whose timestamps read as "now": relations do not count
                # (they are written through the party, which bumps the party's own timestamp)
                stamps = [row.get("last_modified_at")] + [
                    child.get("last_modified_at") for key, rows in children.items() if key != "_relations"
                    for child in rows]
                snap["_lm"] = max((s for s in stamps if s is not None), default=None)
                for key, rows in children.items():
                    snap[key] = [r for r in rows if r.get("active", True)]
                if not snap["_relations"]:  # an ended relation still tells who the employer was
                    snap["_relations"] = children["_relations"]
                snaps[party_id] = snap
        missing = {a["subdivision"] for s in snaps.values() for a in s["_addresses"]
                   if a.get("subdivision") and a["subdivision"] not in refs.subdivisions}
        if missing:
            for row in client.read("country.subdivision", sorted(missing), ["code", "name"]):
                refs.subdivisions[row["id"]] = (row["code"], row["name"])
        return snaps

    def _read_works(self, conn: _Connection, ids: list[int]) -> dict[int, dict]:
        snaps = {}
        for chunk in _chunks(ids):
            for row in conn.client.read("project.work", chunk, WORK_FIELDS, context={"active_test": False}):
                row["_lm"] = row.get("last_modified_at")
                snaps[row["id"]] = row
        return snaps

    def _read(self, conn: _Connection, actor_type: str, ids: list[int]) -> dict[int, dict]:
        return self._read_works(conn, ids) if actor_type == PROJECT else self._read_parties(conn, ids)

    def _party_values(self, conn: _Connection, actor_type: str, snap: dict) -> dict:
        refs = self._refs(conn)
        values: dict = {}
        for key, kind in MECHANISMS[actor_type].items():
            values[key] = next((m["value"] for m in snap["_mechanisms"] if m["type"] == kind), None)
        if actor_type == PERSON:
            values["FIRSTNAME"], values["LASTNAME"] = split_person_name(snap.get("name"))
            values["NUMBER"] = snap.get("code")
            return values
        values["NAME"] = snap.get("name")
        values["NUMBER1"] = snap.get("code")
        ident = self._vat_identifier(snap)
        values["VATNO"] = ident["code"] if ident else None
        values["LANGUAGE"] = refs.langs.get(snap.get("lang"), (None,))[0] if snap.get("lang") else None
        address = snap["_addresses"][0] if snap["_addresses"] else {}
        first, _, rest = (address.get("street") or "").partition("\n")
        values["POSTALAD1"] = first or None
        values["POSTALAD2"] = rest or None
        values["POSTALZIP"] = address.get("postal_code") or None
        values["POSTALCITY"] = address.get("city") or None
        subdivision = address.get("subdivision")
        values["POSTALSTATE"] = refs.subdivisions.get(subdivision, (None, None))[1] if subdivision else None
        country = address.get("country")
        values["COUNTRY"] = refs.countries.get(country, (None,))[0] if country else None
        names = sorted(refs.categories.get(c, str(c)) for c in snap.get("categories") or [])
        values["CATEGORIES"] = ", ".join(names) or None
        return values

    @staticmethod
    def _vat_identifier(snap: dict) -> dict | None:
        """The identifier shown as VATNO: Tryton's tax identifier, else the first identifier without a type."""
        tax_id = snap.get("tax_identifier")
        if tax_id:
            found = next((i for i in snap["_identifiers"] if i["id"] == tax_id), None)
            if found:
                return found
        return next((i for i in snap["_identifiers"] if not i.get("type")), None)

    def _employer(self, conn: _Connection, snap: dict) -> int | None:
        type_id = self._refs(conn).relation_types.get(EMPLOYEE_OF)
        return next((r["to"] for r in snap["_relations"] if r["type"] == type_id), None)

    def _work_values(self, conn: _Connection, snap: dict) -> dict:
        return {
            "NAME": snap.get("name"),
            "NUMBER": snap.get("number") or str(snap["id"]),
            "TEXT": snap.get("comment") or None,
            "STARTDATE": snap["timesheet_start_date"].isoformat() if snap.get("timesheet_start_date") else None,
            "ENDDATE": snap["timesheet_end_date"].isoformat() if snap.get("timesheet_end_date") else None,
            "STATE": self._state_key(conn, snap.get("status")),
        }

    def _state_key(self, conn: _Connection, status_id: int | None) -> str | None:
        if not status_id:
            return None
        status = next((s for s in self._refs(conn).statuses if s["id"] == status_id), None)
        if status is None:
            return None
        return STATE_DONE if (status.get("progress") or 0) >= 1 else STATE_OPENED

    def _actors(self, conn: _Connection, actor_type: str, snaps: list[dict], keys: list[str]) -> list[dict]:
        parents: dict[int, str] = {}
        if actor_type == PERSON:
            parent_ids = sorted({p for p in (self._employer(conn, s) for s in snaps) if p})
            refs = self._refs(conn)
            for chunk in _chunks(parent_ids):
                for row in conn.client.read("party.party", chunk, ["categories"], context={"active_test": False}):
                    cats = set(row["categories"])
                    parents[row["id"]] = (SUPPLIER if refs.category_ids.get(SUPPLIER) in cats
                                          and refs.category_ids.get(CUSTOMER) not in cats else CUSTOMER)
        actors = []
        for snap in snaps:
            if actor_type == PROJECT:
                values = self._work_values(conn, snap)
            else:
                values = self._party_values(conn, actor_type, snap)
            parent = self._employer(conn, snap) if actor_type == PERSON else None
            actors.append({
                "ActorType": actor_type,
                "ErpKey": str(snap["id"]),
                "LastModified": iso_utc(snap["_lm"]),
                "ParentActorType": parents.get(parent, CUSTOMER) if parent else "",
                "ParentErpKey": str(parent) if parent else "",
                "FieldValues": {key: values.get(key) for key in keys},
            })
        return actors

    def _get(self, conn: _Connection, actor_type: str, ids: list[int], keys: list[str]) -> list[dict]:
        """Actors for ids that exist, are active and are of the type, in the order of ``ids``."""
        if not ids:
            return []
        found: list[int] = []
        for chunk in _chunks(ids):
            found += self._search_ids(conn, actor_type, [["id", "in", chunk]])
        snaps = self._read(conn, actor_type, found)
        return self._actors(conn, actor_type, [snaps[i] for i in ids if i in snaps], keys)
