"""Protocol methods of configuration and connections (GetConfigData … DeleteConnection), the catalogue
(GetSupportedActorTypes, GetSupportedActorTypeFields, GetSearchableFields) and lists (GetList, GetListItems);
with what every protocol method of an actor needs: the request's connection, its actor type, the offline warning.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Mapping

from portal.connectors.builtin.demo.catalogue import ACTOR_TYPES, CONFIG_FIELDS, SEARCHABLE_FIELDS, answered_fields
from portal.connectors.builtin.demo.passwords import DEMO_PASSWORD, _stored_secret_matches, config_to_store
from portal.connectors.builtin.demo.request_members import _normalize_guid, _string_list
from portal.connectors.builtin.demo.storage import DemoErpStorage
from portal.connectors.builtin.demo.timestamps import _now_micros, format_timestamp
from portal.connectors.builtin.demo.values import _blank, _truthy
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID, ZERO_GUID, ok_response, warning_response
from portal.connectors.service import ProtocolError

OFFLINE_MESSAGE = "ERP is offline, showing cached data"


class ConnectionMethods(DemoErpStorage):
    """Configuration, connections, catalogue and lists; the request helpers of every protocol method."""

    # -- request helpers: FieldKeys, the answer, the connection, the actor type, the config ------------------

    @staticmethod
    def _field_keys(body: dict) -> list[str] | None:
        keys = _string_list(body, "FieldKeys")
        return keys or None

    def _answer(self, config: Mapping | None, **payload) -> dict:
        if config is not None and _truthy(config.get("SimulateOffline")):
            return warning_response(OFFLINE_MESSAGE, "SimulateOffline is on for this connection.", **payload)
        return ok_response(**payload)

    def _connection(self, conn: sqlite3.Connection, body: dict) -> dict:
        """The stored config of the request's ConnectionGuid, or an UNKNOWN_CONNECTION_ID error."""
        raw = body.get("ConnectionGuid")
        guid = _normalize_guid(raw)
        row = None
        if guid is not None and guid != ZERO_GUID:
            row = conn.execute("SELECT config FROM connections WHERE guid = ?", (guid,)).fetchone()
        if row is None:
            raise ProtocolError("The Demo ERP does not know this connection; save the connection again.",
                                f"Unknown ConnectionGuid {raw!r}", UNKNOWN_CONNECTION_ID)
        return json.loads(row["config"])

    @staticmethod
    def _actor_type(body: dict, member: str = "ActorType") -> str:
        actor_type = body.get(member)
        if actor_type not in ACTOR_TYPES:
            raise ProtocolError(f"The Demo ERP has no actor type {actor_type!r}; it supports "
                                f"{', '.join(ACTOR_TYPES)}.", error_code="UNKNOWN_ACTOR_TYPE")
        return actor_type

    def _check_config(self, info, *, stored: bool = False) -> None:
        """``stored``: ``info`` is a saved config, whose password is a digest (see ``config_to_store``)."""
        if not isinstance(info, Mapping):
            raise ProtocolError("ConnectionInfo must be an object of field values.", error_code="BAD_REQUEST")
        if _blank(info.get("CompanyDb")):
            raise ProtocolError("Company database is required.", "CompanyDb is empty", "INVALID_CONFIG")
        user = str(info.get("ApiUser") or "").strip()
        password = info.get("ApiPassword")
        matches = (_stored_secret_matches(password, DEMO_PASSWORD) if stored
                   else hmac.compare_digest(str(password or "").encode("utf-8"), DEMO_PASSWORD.encode("utf-8")))
        if user and not matches:
            raise ProtocolError(f"The Demo ERP rejected the password of API user {user!r}. Check the API password.",
                                "ApiPassword does not match", "AUTHENTICATION_FAILED")
        currency = info.get("Currency")
        if not _blank(currency) and str(currency) not in self._lists.get("currencies", {}):
            raise ProtocolError(f"The Demo ERP has no currency {currency!r}.", error_code="INVALID_CONFIG")

    # -- protocol: configuration -----------------------------------------------------------------------------

    def GetConfigData(self, body: dict) -> dict:
        return ok_response(FieldMetaDataObjects=[dict(f) for f in CONFIG_FIELDS])

    def TestConfigData(self, body: dict) -> dict:
        info = body.get("ConnectionInfo") or {}
        self._check_config(info)
        answer = self._answer(info)
        if answer["State"] == "Ok":
            answer["UserExplanation"] = f"Connected to Demo ERP company {str(info['CompanyDb']).strip()}."
        return answer

    def SaveConnection(self, body: dict) -> dict:
        guid = _normalize_guid(body.get("ConnectionGuid"))
        if guid is None or guid == ZERO_GUID:
            raise ProtocolError("ConnectionGuid must be a non-zero GUID.", error_code="BAD_REQUEST")
        info = body.get("ConnectionInfo") or {}
        if not isinstance(info, Mapping):
            raise ProtocolError("ConnectionInfo must be an object of field values.", error_code="BAD_REQUEST")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO connections (guid, config, saved_at) VALUES (?, ?, ?) "
                "ON CONFLICT (guid) DO UPDATE SET config = excluded.config, saved_at = excluded.saved_at",
                (guid, json.dumps(config_to_store(info)), format_timestamp(_now_micros())))
        return ok_response()  # storing the config does not need the ERP, so no offline warning here

    def TestConnection(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        self._check_config(config, stored=True)
        answer = self._answer(config)
        if answer["State"] == "Ok":
            answer["UserExplanation"] = f"Connected to Demo ERP company {str(config['CompanyDb']).strip()}."
        return answer

    def DeleteConnection(self, body: dict) -> dict:
        with self._write() as conn:
            self._connection(conn, body)
            conn.execute("DELETE FROM connections WHERE guid = ?", (_normalize_guid(body.get("ConnectionGuid")),))
        return ok_response()

    def GetSupportedActorTypes(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        return self._answer(config, Items=list(ACTOR_TYPES))

    def GetSupportedActorTypeFields(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        actor_type = self._actor_type(body)
        return self._answer(config, FieldMetaDataObjects=answered_fields(actor_type))

    def GetSearchableFields(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        actor_type = self._actor_type(body)
        return self._answer(config, Items=list(SEARCHABLE_FIELDS[actor_type]))

    # -- protocol: lists -------------------------------------------------------------------------------------

    def _list_config(self, body: dict) -> tuple[dict | None, dict[str, str]]:
        config = None
        if _normalize_guid(body.get("ConnectionGuid")) != ZERO_GUID:  # list look-ups before a connection exists
            with self._read() as conn:
                config = self._connection(conn, body)
        name = body.get("ListName")
        if name not in self._lists:
            raise ProtocolError(f"The Demo ERP has no list {name!r}.", error_code="UNKNOWN_LIST")
        return config, self._lists[name]

    def GetList(self, body: dict) -> dict:
        config, items = self._list_config(body)
        return self._answer(config, ListItems=dict(items))

    def GetListItems(self, body: dict) -> dict:
        config, items = self._list_config(body)
        wanted = _string_list(body, "ListItemKeys")
        return self._answer(config, ListItems={key: items[key] for key in wanted if key in items})
