"""The connection checks: GetConfigData, TestConfigData, SaveConnection, TestConnection, the UNKNOWN_CONNECTION_ID
answer for a GUID never saved, GetList with the all-zero GUID, GetSupportedActorTypes, DeleteConnection, and the
response members every answer must have."""

from __future__ import annotations

import uuid

from portal.connectors.client import ConnectorError
from portal.connectors.conformance.results import Failed, Skipped
from portal.connectors.conformance.runner import ENVELOPE, CheckRunner, quiet_client_log
from portal.connectors.conformance.validation import convert_config_value, metadata_problems
from portal.connectors.conformance.wording import _error_text, _listing, _short
from portal.connectors.protocol import ACTOR_TYPES, UNKNOWN_CONNECTION_ID, ZERO_GUID


class ConnectionChecks(CheckRunner):
    """Checks of the connection methods (run once, before and after the per-type checks)."""

    def check_config_data(self) -> str:
        reply = self.call("GetConfigData", {})
        fields = self.member(reply, "FieldMetaDataObjects", list, "an array of FieldMetadataInfo")
        problems = metadata_problems(fields, "FieldMetaDataObjects")
        if problems:
            raise Failed(f"{len(problems)} problem(s) with the config fields: {_listing(problems)}")
        self.config_fields = fields
        index = {f["FieldKey"]: f for f in fields}
        converted = {k: convert_config_value(index.get(k), v) for k, v in self.given_config.items()}
        defaults = []
        for meta in fields:
            key = meta["FieldKey"]
            if key in converted or meta["FieldType"] == "Label" or meta.get("DefaultValue") in (None, ""):
                continue
            converted[key] = convert_config_value(meta, str(meta["DefaultValue"]))
            defaults.append(key)
        self.config = converted
        unknown = [k for k in self.given_config if k not in index]
        missing = [f["FieldKey"] for f in fields if f["Access"] == "Mandatory" and f["FieldType"] != "Label"
                   and converted.get(f["FieldKey"]) in (None, "")]
        if unknown:
            self.warn(f"config keys that are not config fields (sent anyway): {', '.join(unknown)}")
        if missing:
            self.warn(f"Mandatory config fields without a value: {', '.join(missing)} (give them with --config)")
        text = f"{len(fields)} config field(s)"
        if defaults:
            text += f"; DefaultValue used for {', '.join(defaults)}"
        return text

    def check_test_config(self) -> str:
        reply = self.call("TestConfigData", {"ConnectionInfo": self.config})
        return reply.user_explanation or "the settings were accepted"

    def check_save_connection(self) -> str:
        self.call("SaveConnection", {"ConnectionGuid": self.guid, "ConnectionInfo": self.config})
        self.saved = True
        return f"saved as ConnectionGuid {self.guid}"

    def check_test_connection(self) -> str:
        if not self.saved:
            raise Skipped("needs a saved connection (SaveConnection failed)")
        reply = self.call("TestConnection", {"ConnectionGuid": self.guid})
        self.working = True
        return reply.user_explanation or "the connection works"

    def check_unknown_guid(self) -> str:
        if not self.saved:
            raise Skipped("needs a saved connection (SaveConnection failed)")
        stranger = str(uuid.uuid4())
        resend, self.client.resend_config = self.client.resend_config, None
        try:
            with quiet_client_log():  # the error is the expected answer
                reply = self.call("GetSupportedActorTypes", {"ConnectionGuid": stranger})
        except ConnectorError as exc:
            if exc.error_code == UNKNOWN_CONNECTION_ID:
                return f"GetSupportedActorTypes for a GUID never saved answered {UNKNOWN_CONNECTION_ID}"
            if exc.transient:
                raise Failed(f"GetSupportedActorTypes for a GUID never saved failed: {_error_text(exc)}; it must "
                             f"answer ErrorCode {UNKNOWN_CONNECTION_ID}") from None
            raise Failed(f"GetSupportedActorTypes for a GUID never saved answered ErrorCode "
                         f"{exc.error_code or '(empty)'}, not {UNKNOWN_CONNECTION_ID}: the portal would not know "
                         "to re-send the configuration") from None
        finally:
            self.client.resend_config = resend
        raise Failed(f"GetSupportedActorTypes for a GUID never saved answered IsOk true "
                     f"({_short(reply.get('Items'))}); it must answer ErrorCode {UNKNOWN_CONNECTION_ID}")

    def check_config_lists(self) -> str:
        if self.config_fields is None:
            raise Skipped("needs GetConfigData")
        list_fields = [f for f in self.config_fields if f["FieldType"] == "List"]
        if not list_fields:
            raise Skipped("no config field of type List")
        done = []
        for meta in list_fields:
            name = meta["ListName"]
            reply = self.call("GetList", {"ConnectionGuid": ZERO_GUID, "ListName": name})
            items = self.list_items(reply)
            value = self.config.get(meta["FieldKey"])
            if isinstance(value, str) and value and value not in items:
                self.warn(f"{meta['FieldKey']} = {value!r} is not an item of the list {name}")
            done.append(f"{name} ({len(items)} items)")
        return f"GetList with the all-zero GUID answered {', '.join(done)}"

    def check_actor_types(self) -> str:
        self.require_connection()
        reply = self.call("GetSupportedActorTypes", {"ConnectionGuid": self.guid})
        items = self.member(reply, "Items", list, "an array of actor types")
        wrong = [_short(i) for i in items if i not in ACTOR_TYPES]
        if wrong:
            raise Failed(f"Items holds {', '.join(wrong)}, which are not actor types "
                         f"(allowed: {', '.join(ACTOR_TYPES)})")
        if len(set(items)) != len(items):
            raise Failed(f"Items lists an actor type twice: {items}")
        self.supported = list(items)
        if not items:
            self.warn("the connector supports no actor type")
        return ", ".join(items)

    def check_delete_connection(self) -> str:
        if not self.saved:
            raise Skipped("no connection was saved")
        self.call("DeleteConnection", {"ConnectionGuid": self.guid})
        self.saved = False
        resend, self.client.resend_config = self.client.resend_config, None
        try:
            with quiet_client_log():
                self.call("TestConnection", {"ConnectionGuid": self.guid})
        except ConnectorError as exc:
            if exc.error_code != UNKNOWN_CONNECTION_ID:
                self.warn(f"after DeleteConnection, TestConnection answered {exc.error_code or 'an error'} "
                          f"rather than {UNKNOWN_CONNECTION_ID}")
        else:
            self.warn("the connection still works after DeleteConnection")
        finally:
            self.client.resend_config = resend
        return "the connection was deleted"

    def check_envelopes(self) -> str:
        if not self.answers:
            raise Skipped("no successful answer to look at")
        if not self.envelope:
            return f"all {self.answers} successful answers had {', '.join(ENVELOPE)} with valid types"
        problems = [f"{method}: {', '.join(found)}" for method, found in self.envelope.items()]
        raise Failed(f"answers lacking the members every response must have: {_listing(problems)}")
