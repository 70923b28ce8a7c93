"""Protocol methods of configuration and connections (GetConfigData … DeleteConnection, with the probe that
tests a config against Tryton), the catalogue (GetSupportedActorTypes, GetSupportedActorTypeFields,
GetSearchableFields) and lists (GetList, GetListItems)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from portal.connectors.builtin.tryton.catalogue import (
    ACTOR_TYPES,
    CUSTOMER,
    EMPLOYEE_OF,
    FIELDS,
    LIST_COUNTRIES,
    LIST_LANGUAGES,
    LIST_PROJECT_STATES,
    LISTS,
    SEARCH,
    STATE_DONE,
    STATE_OPENED,
    SUPPLIER,
)
from portal.connectors.builtin.tryton.config import (
    CFG_COMPANY,
    CONFIG_FIELDS,
    checked_config,
    make_client,
)
from portal.connectors.builtin.tryton.connections import TrytonConnections, _Connection
from portal.connectors.builtin.tryton.errors import _protocol
from portal.connectors.builtin.tryton.request_members import _actor_type, _guid
from portal.connectors.builtin.tryton.values import _escape_like
from portal.connectors.builtin.tryton_rpc import (
    TrytonAddressNotAllowed,
    TrytonAuthError,
    TrytonClient,
    TrytonError,
    TrytonUnknownDatabase,
)
from portal.connectors.protocol import ZERO_GUID, ok_response, warning_response
from portal.connectors.service import ProtocolError

log = logging.getLogger(__name__)


class ConnectionMethods(TrytonConnections):
    """Configuration, connections, catalogue and lists."""

    # ---------------------------------------------------------------------------------- config methods
    def GetConfigData(self, body: dict) -> dict:  # noqa: N802 - protocol names
        return ok_response(FieldMetaDataObjects=CONFIG_FIELDS)

    @_protocol
    def TestConfigData(self, body: dict) -> dict:  # noqa: N802
        info = checked_config(body.get("ConnectionInfo") or {}, self.allowed_networks)
        client = make_client(info, self.allowed_networks)
        try:
            return ok_response(UserExplanation=self._probe(client, info))
        finally:
            client.logout()

    def _probe(self, client: TrytonClient, info: Mapping) -> str:
        try:
            version = client.server_version()
        except TrytonAddressNotAllowed as exc:
            raise ProtocolError(exc.message, exc.tech, "ADDRESS_NOT_ALLOWED") from exc
        except TrytonError as exc:
            # Whatever answered (nothing, a closed port, a timeout, some other HTTP server): one text, so a connection
            # test cannot tell an open port from a closed one; what happened goes to the server log.
            log.warning("tryton connector: no Tryton at %s (%s: %s)", client.url, type(exc).__name__, exc.tech)
            raise ProtocolError(client.unreachable_message, exc.tech, "ERP_UNREACHABLE") from exc
        try:
            client.login()
        except TrytonUnknownDatabase as exc:
            raise ProtocolError(f"Tryton at {client.url} has no database '{client.database}'.", exc.tech,
                                "ERP_UNKNOWN_DATABASE") from exc
        except TrytonAuthError as exc:
            raise ProtocolError(f"Tryton refused the user name or password for '{client.user}'.", exc.tech,
                                "ERP_AUTH_FAILED") from exc
        company = str(info.get(CFG_COMPANY) or "").strip()
        parties = client.model("party.party", "search_count", [])
        text = f"Connected to Tryton {version}, database '{client.database}', as '{client.user}' ({parties} parties)."
        if company:
            domain = [["id", "=", int(company)]] if company.isdigit() else [
                ["party.name", "ilike", _escape_like(company)]]
            if len(client.search("company.company", domain, limit=2)) != 1:
                raise ProtocolError(f"Connected, but Tryton has no single company '{company}'.",
                                    error_code="ERP_CONFIGURATION")
        return text

    def SaveConnection(self, body: dict) -> dict:  # noqa: N802
        guid = _guid(body)
        if guid == ZERO_GUID:
            raise ProtocolError("A connection cannot be saved under the all-zero GUID.", error_code="BAD_REQUEST")
        info = checked_config(body.get("ConnectionInfo"), self.allowed_networks)
        self.store.save(guid, info)
        self._forget(guid)
        return ok_response()

    @_protocol
    def TestConnection(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        client = make_client(conn.config, self.allowed_networks)  # a fresh login proves the stored credentials
        try:
            text = self._probe(client, conn.config)
        finally:
            client.logout()
        self._refs(conn, refresh=True)
        refs = conn.refs
        missing = [name for name in (CUSTOMER, SUPPLIER) if name not in refs.category_ids]
        if EMPLOYEE_OF not in refs.relation_types:
            missing.append(f"relation type '{EMPLOYEE_OF}'")
        if missing:
            return warning_response(f"{text} Not yet set up in Tryton: {', '.join(missing)} (created on the first "
                                    "CreateActor).")
        return ok_response(UserExplanation=text)

    def DeleteConnection(self, body: dict) -> dict:  # noqa: N802
        guid = _guid(body)
        self._forget(guid)
        self.store.delete(guid)
        return ok_response()

    # ------------------------------------------------------------------------------ metadata methods
    def GetSupportedActorTypes(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        return ok_response(Items=list(ACTOR_TYPES))

    def GetSupportedActorTypeFields(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        return ok_response(FieldMetaDataObjects=FIELDS[_actor_type(body)])

    def GetSearchableFields(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        actor_type = _actor_type(body)
        return ok_response(Items=[f["FieldKey"] for f in FIELDS[actor_type] if f["FieldKey"] in SEARCH[actor_type]])

    # ---------------------------------------------------------------------------------------- lists
    @_protocol
    def GetList(self, body: dict) -> dict:  # noqa: N802
        name = body.get("ListName")
        if name not in LISTS:
            raise ProtocolError(f"The Tryton connector has no list {name!r}.", f"lists: {', '.join(LISTS)}",
                                "UNKNOWN_LIST")
        if str(body.get("ConnectionGuid") or "") == ZERO_GUID:
            # Before a connection is saved there is no Tryton to ask; only the static list is known.
            return ok_response(ListItems=self._static_states() if name == LIST_PROJECT_STATES else {})
        return ok_response(ListItems=self._list(self._connection(body), name))

    @_protocol
    def GetListItems(self, body: dict) -> dict:  # noqa: N802
        answer = self.GetList(body)
        if not answer.get("IsOk"):
            return answer
        keys = [str(k) for k in body.get("ListItemKeys") or []]
        items = answer["ListItems"]
        return ok_response(ListItems={k: items[k] for k in keys if k in items})

    @staticmethod
    def _static_states() -> dict:
        return {STATE_OPENED: "Open", STATE_DONE: "Done"}

    def _list(self, conn: _Connection, name: str) -> dict:
        refs = self._refs(conn)
        if name == LIST_COUNTRIES:
            return {code: label for code, label in refs.countries.values()}
        if name == LIST_LANGUAGES:
            return {code: label for code, label in refs.langs.values()}
        states = {}
        for status in refs.statuses:
            if "project" in (status.get("types") or ["project"]):
                key = STATE_DONE if (status.get("progress") or 0) >= 1 else STATE_OPENED
                states.setdefault(key, status["name"])
        return states or self._static_states()
