"""A connection's config fields: the connector's field metadata (GetConfigData) and List items, the default values
of new fields, and the parsing of submitted form values (blank password fields keep the stored secret)."""

from __future__ import annotations

import hashlib
from datetime import date

from flask import current_app

from portal.connectors.client import ConnectorError
from portal.models import ZERO_GUID, Connector, FieldAccess, FieldType
from portal.services.connectors import ServiceError, client_for

VALUE_TYPES = {FieldType.CHECKBOX, FieldType.TEXT, FieldType.PASSWORD, FieldType.INTEGER, FieldType.DOUBLE,
               FieldType.LIST, FieldType.DATE}


# ---------------------------------------------------------------------------------------------- config fields

def sorted_fields(fields: list[dict]) -> list[dict]:
    return sorted(fields, key=lambda f: (f.get("Rank") or 0, f.get("DisplayName") or f.get("FieldKey")))


def config_fields(connector: Connector) -> list[dict]:
    """The connector's config fields (live GetConfigData), ordered by Rank."""
    try:
        return sorted_fields(client_for(connector).get_config_data())
    except ConnectorError as exc:
        raise ServiceError(f"Could not read the configuration fields of {connector.name}: {exc.user_message}") \
            from exc


def config_lists(connector: Connector, fields: list[dict], guid: str = ZERO_GUID) -> dict[str, dict[str, str]]:
    """Items of every List-type config field (GetList with the all-zero GUID while not saved)."""
    lists: dict[str, dict[str, str]] = {}
    names = {f.get("ListName") for f in fields if f.get("FieldType") == FieldType.LIST and f.get("ListName")}
    if not names:
        return lists
    client = client_for(connector)
    for name in sorted(names):
        try:
            lists[name] = client.get_list(guid, name)
        except ConnectorError as exc:
            raise ServiceError(f"Could not read the list {name} from {connector.name}: {exc.user_message}") from exc
    return lists


def expand_default(text: str, *, user_name: str = "", serial: str = "") -> str:
    """Template tags in config defaults (spec §3.3.2): <name> = the current user's name, <ser#> = this
    installation's serial (its instance id)."""
    return (text or "").replace("<name>", user_name).replace("<ser#>", serial)


def installation_serial() -> str:
    return hashlib.sha256(current_app.config["SECRET_KEY"].encode()).hexdigest()[:12].upper()


def default_for(meta: dict, *, user_name: str = "", lists: dict | None = None):
    """A config field's initial value from its metadata DefaultValue (parsing rules of spec §3.3.2)."""
    raw = expand_default(str(meta.get("DefaultValue") or ""), user_name=user_name, serial=installation_serial())
    kind = meta.get("FieldType")
    if kind == FieldType.CHECKBOX:
        return raw.strip().lower() in {"1", "true", "yes", "on", "[i:1]"}
    if kind == FieldType.INTEGER:
        try:
            return int(raw)
        except ValueError:
            return 0
    if kind == FieldType.DOUBLE:
        try:
            return float(raw)
        except ValueError:
            return 0.0
    if kind == FieldType.LIST:
        items = (lists or {}).get(meta.get("ListName") or "", {})
        return raw if raw in items else None
    if kind == FieldType.DATE:
        return raw or None
    return raw


def parse_config_value(meta: dict, raw: str | None):
    """Form text -> JSON-native config value; raises ServiceError(field=FieldKey) on bad input."""
    key, kind = meta["FieldKey"], meta.get("FieldType")
    text = (raw or "").strip() if kind != FieldType.PASSWORD else (raw or "")
    if kind == FieldType.CHECKBOX:
        return text.lower() in {"1", "true", "on", "yes", "y"}
    if text == "":
        return None
    if kind == FieldType.INTEGER:
        try:
            return int(text)
        except ValueError:
            raise ServiceError(f"“{text}” is not a whole number.", key) from None
    if kind == FieldType.DOUBLE:
        try:
            return float(text.replace(",", "."))
        except ValueError:
            raise ServiceError(f"“{text}” is not a number.", key) from None
    if kind == FieldType.DATE:
        try:
            return date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            raise ServiceError(f"“{text}” is not a date (YYYY-MM-DD).", key) from None
    max_length = meta.get("MaxLength") or 0
    if max_length and len(text) > max_length:
        raise ServiceError(f"At most {max_length} characters.", key)
    return text


def collect_config(fields: list[dict], form: dict[str, str], stored: dict | None = None,
                   lists: dict | None = None) -> tuple[dict, dict[str, str]]:
    """Parse submitted config fields. Blank password fields keep the stored secret.
    Returns (values, errors by FieldKey)."""
    values: dict = {}
    errors: dict[str, str] = {}
    stored = stored or {}
    for meta in fields:
        key, kind = meta["FieldKey"], meta.get("FieldType")
        if kind not in VALUE_TYPES:
            continue
        raw = form.get(f"cfg_{key}")
        if kind == FieldType.PASSWORD and not raw:
            value = stored.get(key)
        else:
            try:
                value = parse_config_value(meta, raw)
            except ServiceError as exc:
                errors[key] = exc.message
                continue
        if (kind == FieldType.LIST and value is not None and lists is not None
                and value not in lists.get(meta.get("ListName") or "", {})):
            errors[key] = "Choose one of the listed values."
            continue
        if meta.get("Access") == FieldAccess.MANDATORY and value in (None, ""):
            errors[key] = "This field is required."
            continue
        values[key] = value
    return values, errors


def secret_keys(fields: list[dict]) -> set[str]:
    return {f["FieldKey"] for f in fields if f.get("FieldType") == FieldType.PASSWORD}
