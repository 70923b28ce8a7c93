"""What a write asks of Tryton: FieldValues checked (``_clean``), then turned into the values of one party or
project ``create``/``write`` (nested one2many actions for addresses, contact mechanisms, identifiers and
relations) with the ``_timestamp`` of every record changed; the categories and relation types created on first
use; the parent of a person checked."""

from __future__ import annotations

import logging

from portal.connectors.builtin.tryton.actor_documents import ActorDocuments
from portal.connectors.builtin.tryton.catalogue import (
    ADDRESS_KEYS,
    CONTROL_CHARS,
    CUSTOMER,
    EMPLOYEE_OF,
    EMPLOYER_OF,
    FIELD_INDEX,
    FIELDS,
    MECHANISMS,
    MULTILINE_KEYS,
    PERSON,
    SUPPLIER,
)
from portal.connectors.builtin.tryton.connections import _Connection
from portal.connectors.builtin.tryton.protocol_connections import ConnectionMethods
from portal.connectors.builtin.tryton.request_members import _int_keys
from portal.connectors.builtin.tryton.values import (
    _case_variants,
    _escape_like,
    join_person_name,
    parse_date,
    split_person_name,
)
from portal.connectors.service import ProtocolError

log = logging.getLogger(__name__)


class ActorChanges(ConnectionMethods, ActorDocuments):
    """FieldValues checked and turned into Tryton writes (the lists come from ``ConnectionMethods``)."""

    def _clean(self, conn: _Connection, actor_type: str, values, *, creating: bool) -> dict:
        """Validate FieldValues (JSON natives) → {FieldKey: python value or None}. Unknown and ReadOnly keys are
        ignored. Raises INVALID_VALUE listing every problem."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ProtocolError("FieldValues must be an object.", error_code="BAD_REQUEST")
        fields = FIELD_INDEX[actor_type]
        out: dict = {}
        errors: list[str] = []
        for key, raw in values.items():
            meta = fields.get(key)
            if meta is None or meta["Access"] == "ReadOnly":
                continue
            label = f"{meta['DisplayName']} ({key})"
            if isinstance(raw, (bool, list, dict)):
                errors.append(f"{label}: {raw!r} is not a {meta['FieldType'].lower()} value.")
                continue
            if isinstance(raw, (int, float)):
                raw = str(raw)
            if raw is None or not str(raw).strip():
                out[key] = None
                continue
            text = str(raw).strip()
            if meta["FieldType"] == "Date":
                try:
                    out[key] = parse_date(text)
                except ValueError as exc:
                    errors.append(f"{label}: {exc}.")
                continue
            if meta["FieldType"] == "List":
                items = self._list(conn, meta["ListName"])
                if key == "COUNTRY":
                    text = text.upper()
                if text not in items:
                    errors.append(f"{label}: '{text}' is not in Tryton's list {meta['ListName']}.")
                    continue
            elif key not in MULTILINE_KEYS and CONTROL_CHARS.search(text):
                errors.append(f"{label}: line breaks and control characters are not allowed.")
                continue
            if meta["MaxLength"] and len(text) > meta["MaxLength"]:
                errors.append(f"{label}: longer than {meta['MaxLength']} characters.")
                continue
            if key == "EMAIL" and ("@" not in text or any(c.isspace() for c in text)):
                errors.append(f"{label}: '{text}' is not an e-mail address.")
                continue
            out[key] = text
        for meta in FIELDS[actor_type]:
            key = meta["FieldKey"]
            if meta["Access"] == "Mandatory" and ((creating and out.get(key) is None)
                                                   or (key in out and out[key] is None)):
                errors.append(f"{meta['DisplayName']} ({key}) must not be blank.")
        if actor_type == PERSON and creating and not (out.get("FIRSTNAME") or out.get("LASTNAME")):
            errors.append("A person needs a first name or a last name.")
        if errors:
            raise ProtocolError("Tryton cannot take these values: " + " ".join(errors), error_code="INVALID_VALUE")
        return out

    def _subdivision(self, conn: _Connection, text: str, country_id: int | None) -> int:
        if not country_id:
            raise ProtocolError(f"Subdivision (POSTALSTATE) '{text}' needs a country (COUNTRY).",
                                error_code="INVALID_VALUE")
        code = self._refs(conn).countries.get(country_id, ("",))[0]
        candidates = [text.upper(), f"{code}-{text}".upper()]
        names = [["name", "ilike", _escape_like(v)] for v in _case_variants(text)]
        domain = [["country", "=", country_id], ["OR", ["code", "in", candidates], *names]]
        found = conn.client.search_read("country.subdivision", domain, ["code", "name"], limit=2)
        if len(found) != 1:
            raise ProtocolError(f"Tryton knows no single subdivision '{text}' in country {code}.",
                                f"found {found}", "INVALID_VALUE")
        self._refs(conn).subdivisions[found[0]["id"]] = (found[0]["code"], found[0]["name"])
        return found[0]["id"]

    def _party_changes(self, conn: _Connection, actor_type: str, clean: dict, snap: dict | None,
                       parent_id: int | None) -> tuple[dict, dict]:
        """FieldValues → the values of one party ``write``/``create`` (with nested one2many actions), and the
        ``_timestamp`` entries of every record that will be changed."""
        refs = self._refs(conn)
        values: dict = {}
        stamps: dict = {}
        if snap is not None:
            stamps[f"party.party,{snap['id']}"] = snap["_timestamp"]

        def child_stamp(model, row):
            stamps[f"{model},{row['id']}"] = row["_timestamp"]

        if actor_type == PERSON:
            if "FIRSTNAME" in clean or "LASTNAME" in clean:
                first, last = split_person_name(snap.get("name")) if snap else (None, None)
                name = join_person_name(clean.get("FIRSTNAME", first), clean.get("LASTNAME", last))
                if not name:
                    raise ProtocolError("A person needs a first name or a last name.", error_code="INVALID_VALUE")
                values["name"] = name
        elif "NAME" in clean:
            values["name"] = clean["NAME"]
        if snap is not None and values.get("name") == snap.get("name"):
            values.pop("name", None)
        if snap is None and actor_type in (CUSTOMER, SUPPLIER):
            values["categories"] = [["add", [self._ensure_category(conn, actor_type)]]]
        if "LANGUAGE" in clean:
            lang = refs.lang_ids.get(clean["LANGUAGE"]) if clean["LANGUAGE"] else None
            if snap is None or lang != snap.get("lang"):
                values["lang"] = lang
        if "VATNO" in clean:
            ident = self._vat_identifier(snap) if snap else None
            if clean["VATNO"] is None and ident:
                values["identifiers"] = [["delete", [ident["id"]]]]
                child_stamp("party.identifier", ident)
            elif clean["VATNO"] and ident and ident["code"] != clean["VATNO"]:
                values["identifiers"] = [["write", [ident["id"]], {"code": clean["VATNO"]}]]
                child_stamp("party.identifier", ident)
            elif clean["VATNO"] and not ident:
                values["identifiers"] = [["create", [{"type": None, "code": clean["VATNO"]}]]]
        actions: list = []
        creates: list = []
        for key, kind in MECHANISMS[actor_type].items():
            if key not in clean:
                continue
            current = next((m for m in (snap or {}).get("_mechanisms", []) if m["type"] == kind), None)
            wanted = clean[key]
            if wanted is None and current:
                actions.append(["delete", [current["id"]]])
                child_stamp("party.contact_mechanism", current)
            elif wanted and current and current["value"] != wanted:
                actions.append(["write", [current["id"]], {"value": wanted}])
                child_stamp("party.contact_mechanism", current)
            elif wanted and not current:
                creates.append({"type": kind, "value": wanted})
        if creates:
            actions.append(["create", creates])
        if actions:
            values["contact_mechanisms"] = actions
        if actor_type != PERSON and any(k in clean for k in ADDRESS_KEYS):
            address = snap["_addresses"][0] if snap and snap["_addresses"] else None
            current = address or {}
            first, _, rest = (current.get("street") or "").partition("\n")
            new: dict = {}
            if "POSTALAD1" in clean or "POSTALAD2" in clean:
                line1 = clean.get("POSTALAD1", first or None) or ""
                line2 = clean.get("POSTALAD2", rest or None) or ""
                new["street"] = (line1 + ("\n" + line2 if line2 else "")) or None
            if "POSTALZIP" in clean:
                new["postal_code"] = clean["POSTALZIP"]
            if "POSTALCITY" in clean:
                new["city"] = clean["POSTALCITY"]
            country_id = current.get("country")
            if "COUNTRY" in clean:
                country_id = refs.country_ids.get(clean["COUNTRY"]) if clean["COUNTRY"] else None
                new["country"] = country_id
            if "POSTALSTATE" in clean:
                new["subdivision"] = (self._subdivision(conn, clean["POSTALSTATE"], country_id)
                                      if clean["POSTALSTATE"] else None)
            elif "COUNTRY" in clean and current.get("subdivision") and country_id != current.get("country"):
                new["subdivision"] = None  # a subdivision belongs to its country
            new = {k: v for k, v in new.items() if address is None or address.get(k) != v}
            if address and new:
                values["addresses"] = [["write", [address["id"]], new]]
                child_stamp("party.address", address)
            elif address is None and any(v is not None for v in new.values()):
                values["addresses"] = [["create", [new]]]
        if actor_type == PERSON and parent_id is not None:
            employee_of = self._ensure_relation_type(conn)
            relation = next((r for r in (snap or {}).get("_relations", []) if r["type"] == employee_of), None)
            if relation is None:
                values["relations"] = [["create", [{"to": parent_id, "type": employee_of}]]]
            elif relation["to"] != parent_id:
                values["relations"] = [["write", [relation["id"]], {"to": parent_id}]]
        return values, stamps

    def _ensure_category(self, conn: _Connection, name: str) -> int:
        refs = self._refs(conn)
        if name not in refs.category_ids:
            log.info("tryton connector: creating party category %s", name)
            conn.client.model("party.category", "create", [{"name": name}])
            refs = self._refs(conn, refresh=True)
        return refs.category_ids[name]

    def _ensure_relation_type(self, conn: _Connection) -> int:
        refs = self._refs(conn)
        if EMPLOYEE_OF not in refs.relation_types:
            log.info("tryton connector: creating relation types %s/%s", EMPLOYEE_OF, EMPLOYER_OF)
            client = conn.client
            employee_of = client.model("party.relation.type", "create", [{"name": EMPLOYEE_OF}])[0]
            employer_of = refs.relation_types.get(EMPLOYER_OF) or client.model(
                "party.relation.type", "create", [{"name": EMPLOYER_OF, "reverse": employee_of}])[0]
            client.model("party.relation.type", "write", [employee_of], {"reverse": employer_of})
            refs = self._refs(conn, refresh=True)
        return refs.relation_types[EMPLOYEE_OF]

    def _work_changes(self, conn: _Connection, clean: dict, snap: dict | None) -> tuple[dict, dict]:
        values: dict = {}
        stamps = {f"project.work,{snap['id']}": snap["_timestamp"]} if snap else {}
        if "NAME" in clean:
            values["name"] = clean["NAME"]
        if "TEXT" in clean:
            values["comment"] = clean["TEXT"]
        if "STARTDATE" in clean or "ENDDATE" in clean:
            start = clean.get("STARTDATE", (snap or {}).get("timesheet_start_date"))
            end = clean.get("ENDDATE", (snap or {}).get("timesheet_end_date"))
            if start and end and end < start:
                raise ProtocolError("The end date is before the start date.", error_code="INVALID_VALUE")
            values["timesheet_start_date"], values["timesheet_end_date"] = start, end
            if start or end:
                values["timesheet_available"] = True
        if "STATE" in clean and clean["STATE"]:
            wanted = clean["STATE"]
            if snap is None or self._state_key(conn, snap.get("status")) != wanted:
                status = next((s for s in self._refs(conn).statuses if "project" in (s.get("types") or ["project"])
                               and self._state_key(conn, s["id"]) == wanted), None)
                if status is None:
                    raise ProtocolError(f"Tryton has no project status for '{wanted}'.", error_code="INVALID_VALUE")
                values["status"] = status["id"]
                if status.get("progress") is not None:  # Tryton requires progress to reach a "Done" status
                    values["progress"] = status["progress"]
        if snap is None:
            values["type"] = "project"
            company = self._company(conn)
            if not company:
                raise ProtocolError("The Tryton user has no company, so projects cannot be created. Set the "
                                    "company in Tryton or in the connection's settings.",
                                    error_code="ERP_CONFIGURATION")
            values["company"] = company
        return values, stamps

    def _check_parent(self, conn: _Connection, actor: dict, *, required: bool) -> int | None:
        key = actor.get("ParentErpKey")
        if key in (None, ""):
            if required:
                raise ProtocolError("A person needs its company: ParentErpKey (and ParentActorType) is missing.",
                                    error_code="INVALID_VALUE")
            return None
        ids = _int_keys([key])
        found = conn.client.search("party.party", [["id", "in", ids]], limit=1) if ids else []
        if not found:
            raise ProtocolError(f"The parent {actor.get('ParentActorType') or 'company'} {key} does not exist in "
                                "Tryton (or is archived).", error_code="NOT_FOUND")
        return found[0]
