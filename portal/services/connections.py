"""ERP connections: config fields, test-before-save, save, scope, actor/field catalogue cache, activation,
soft delete and restore (spec §1.4–1.6).

Connector calls are always made outside a database write transaction: read, call, then write in one short
transaction, so a slow ERP never holds a lock and a failure never leaves half a connection behind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select

from portal.connectors.client import ConnectorError
from portal.connectors.protocol import ACTOR_TYPES
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    ZERO_GUID,
    ActorTypeConfig,
    Connection,
    ConnectionAccess,
    Connector,
    ErpField,
    FieldAccess,
    FieldType,
    User,
    UserGroup,
    crm_fields,
)
from portal.security import crypto
from portal.services import audit
from portal.services.connectors import ServiceError, client_for, normalise_url

log = logging.getLogger(__name__)

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


# The reserved key, inside secrets_encrypted, listing the secrets cleared because their address changed (they must
# be typed again before the connection is tested or activated). No FieldKey holds a NUL; never sent anywhere.
REENTER_KEY = "\u0000reenter"


def stored_secrets(connection: Connection) -> dict:
    """The connection's stored secrets (decrypted), by FieldKey."""
    secrets = crypto.decrypt_json(connection.secrets_encrypted)
    secrets.pop(REENTER_KEY, None)
    return secrets


def secrets_to_reenter(connection: Connection | None) -> list[str]:
    """FieldKeys of secrets cleared by :func:`clear_secrets` and not entered again since."""
    if connection is None or not connection.secrets_encrypted:
        return []
    return list(crypto.decrypt_json(connection.secrets_encrypted).get(REENTER_KEY) or [])


def full_config(connection: Connection) -> dict:
    """Stored config including decrypted secrets: what SaveConnection sends to the connector."""
    values = dict(connection.config_values or {})
    values.update(stored_secrets(connection))
    return values


def clear_secrets(connection: Connection, *, reason: str, actor=None, **ctx) -> list[str]:
    """Forget the connection's stored secrets because the address they would be sent to changed (``reason``):
    nothing secret goes to a new address unless an admin types it again. The cleared keys are remembered
    (:func:`secrets_to_reenter`): the form asks for them, and Test and activation are refused until a save with
    them typed again has passed its test. An active connection is deactivated (it could not work without them).
    Adds an audit row; the caller commits. Returns the cleared keys ([] when nothing secret was stored)."""
    secrets = stored_secrets(connection)
    cleared = sorted(k for k, v in secrets.items() if v not in (None, ""))
    if not cleared:
        return []
    pending = sorted(set(cleared) | set(secrets_to_reenter(connection)))
    before = {"secrets": {k: "set" for k in cleared}, "active": connection.active,
              "last_test_ok": connection.last_test_ok}
    connection.secrets_encrypted = crypto.encrypt_json({REENTER_KEY: pending})
    connection.active = False
    connection.last_test_ok = False
    connection.last_test_message = f"{reason} Enter the password(s) again and test the connection."[:2000]
    audit.record("connection.secrets_cleared", connection, before=before,
                 after={"secrets": {}, "active": False, "last_test_ok": False, "reenter": pending, "reason": reason},
                 actor=actor, **ctx)
    return cleared


# ------------------------------------------------------------------------------------------ addresses and sealing

_ADDRESS_WORDS = {"url", "uri", "urls", "host", "hostname", "server", "endpoint", "address", "domain", "ip",
                  "wsdl", "site", "baseurl", "website"}


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", text or "")]


def address_keys(fields: list[dict], *value_sets: dict) -> list[str]:
    """Text config fields that say where the connector sends the connection's secrets: named like an address
    (``url``, "Tryton server URL", ``Host`` …), or holding a ``scheme://`` value in any of ``value_sets``."""
    keys = []
    for meta in fields:
        if meta.get("FieldType") not in (FieldType.TEXT, None):
            continue
        key = meta["FieldKey"]
        words = _words(key) + _words(str(meta.get("DisplayName") or ""))
        named = any(w in _ADDRESS_WORDS or w.endswith(("url", "uri", "host")) for w in words)
        valued = any("://" in str(values.get(key) or "") for values in value_sets)
        if named or valued:
            keys.append(key)
    return keys


def address_values(fields: list[dict], values: dict) -> dict[str, str]:
    """The normalised values of the connection's address fields (see :func:`address_keys`)."""
    return {k: normalise_url(str(values.get(k) or "")) for k in address_keys(fields, values)}


def moved_addresses(fields: list[dict], stored: dict, submitted: dict) -> list[str]:
    """Address fields whose value differs (normalised) between the stored config and ``submitted``."""
    return [k for k in address_keys(fields, stored, submitted)
            if normalise_url(str(stored.get(k) or "")) != normalise_url(str(submitted.get(k) or ""))]


def submitted_values(fields: list[dict], form) -> dict:
    """The config values of a posted form, parsed as :func:`collect_config` would (bad ones left out)."""
    values = {}
    for meta in fields:
        if meta.get("FieldType") not in VALUE_TYPES or meta.get("FieldType") == FieldType.PASSWORD:
            continue
        try:
            values[meta["FieldKey"]] = parse_config_value(meta, form.get(f"cfg_{meta['FieldKey']}"))
        except ServiceError:
            continue
    return values


SEAL_PURPOSE = "connection-secret"


def seal_binding(connector: Connector, connection_ref: str, fields: list[dict], values: dict,
                 user_id: int | None) -> dict:
    """What a secret carried between the steps of one connection form is bound to: that connection (its GUID, or
    ``new:<form nonce>``), the connector and its address, the connection's own address fields, and the admin."""
    return {"connection": connection_ref, "connector": connector.id, "connector_url": normalise_url(connector.url),
            "addresses": address_values(fields, values), "user": user_id}


def seal_secret(value: str, binding: dict, key: str) -> str:
    return crypto.seal(value, purpose=SEAL_PURPOSE, binding={**binding, "field": key})


def open_secret(token: str, binding: dict, key: str) -> str:
    """The secret of a :func:`seal_secret` token with the same binding and field, within the TTL; raises
    ``crypto.SealedValueRefused`` (``SealedValueExpired`` for a genuine but stale one) otherwise."""
    return crypto.unseal(token, purpose=SEAL_PURPOSE, binding={**binding, "field": key})


def _fingerprint(connector: Connector, values: dict) -> str:
    # Keyed: the signed token is readable (base64) in the page, and a plain hash of the values would let anyone
    # who sees it try passwords offline.
    message = json.dumps([connector.id, normalise_url(connector.url), values], sort_keys=True, default=str)
    return hmac.new(current_app.config["SECRET_KEY"].encode(), message.encode(), hashlib.sha256).hexdigest()


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="connection-test")


def _connector(connector: Connector | int) -> Connector:
    return connector if isinstance(connector, Connector) else db.session.get(Connector, connector)


def test_token(connector: Connector | int, values: dict) -> str:
    """Proof that exactly these config values passed TestConfigData at this connector's address (checked again on
    save)."""
    return _signer().dumps(_fingerprint(_connector(connector), values))


def token_matches(token: str | None, connector: Connector | int, values: dict) -> bool:
    if not token:
        return False
    try:
        return hmac.compare_digest(str(_signer().loads(token)), _fingerprint(_connector(connector), values))
    except BadSignature:
        return False


@dataclass
class TestResult:
    ok: bool
    message: str
    warning: str | None = None


def test_config(connector: Connector, values: dict) -> TestResult:
    """TestConfigData with unsaved values."""
    try:
        reply = client_for(connector).test_config_data(values)
    except ConnectorError as exc:
        return TestResult(False, exc.user_message)
    text = reply.user_explanation or "The connector accepted the configuration."
    return TestResult(True, text, reply.warning)


# ---------------------------------------------------------------------------------------------- scope

@dataclass
class Scope:
    all_access: bool = True
    all_can_create: bool = True
    # (kind 'user'|'group', id) -> 'connect' | 'create'
    entries: dict[tuple[str, int], str] = field(default_factory=dict)


def scope_of(connection: Connection | None) -> Scope:
    if connection is None:
        return Scope()
    entries = {}
    for row in connection.access:
        kind, ident = ("user", row.user_id) if row.user_id else ("group", row.group_id)
        entries[(kind, ident)] = "create" if row.can_create else "connect"
    return Scope(connection.all_access, connection.all_can_create, entries)


EMPTY_SCOPE = ("Choose at least one user or group for “Specific users and groups”, or choose Everyone: "
               "nobody could use this connection.")


def _known_entries(scope: Scope) -> dict[tuple[str, int], str]:
    """The scope's entries whose user or group exists (others are dropped, never stored)."""
    user_ids = {i for (k, i) in scope.entries if k == "user"}
    group_ids = {i for (k, i) in scope.entries if k == "group"}
    known_users = set(db.session.scalars(select(User.id).where(User.id.in_(user_ids)))) if user_ids else set()
    known_groups = set(db.session.scalars(select(UserGroup.id).where(UserGroup.id.in_(group_ids)))) \
        if group_ids else set()
    return {(kind, ident): level for (kind, ident), level in scope.entries.items()
            if (kind == "user" and ident in known_users) or (kind == "group" and ident in known_groups)}


def scope_problem(scope: Scope) -> str | None:
    """Why the scope cannot be saved, or None: "Specific users and groups" needs at least one existing user or group
    (spec §1.4: OK stays dimmed while the scope is missing). Checked by :func:`save_connection`, so no caller (the
    form, the CLI, a script) stores a connection nobody can use; the form asks first to show it on the scope."""
    if scope.all_access or _known_entries(scope):
        return None
    return EMPTY_SCOPE


def _apply_scope(connection: Connection, scope: Scope) -> None:
    connection.all_access = scope.all_access
    connection.all_can_create = scope.all_can_create
    connection.access.clear()
    db.session.flush()
    if scope.all_access:
        return
    for (kind, ident), level in sorted(_known_entries(scope).items()):
        connection.access.append(ConnectionAccess(
            user_id=ident if kind == "user" else None, group_id=ident if kind == "group" else None,
            can_connect=True, can_create=level == "create"))


def scope_summary(connection: Connection) -> str:
    if connection.all_access:
        return "Everyone" + ("" if connection.all_can_create else " (create in ERP: nobody)")
    names = [(row.user.name if row.user_id else f"group {row.group.name}") for row in connection.access]
    return ", ".join(names) if names else "No users or groups are selected"


# ---------------------------------------------------------------------------------------------- save

def snapshot(connection: Connection) -> dict:
    scope = scope_of(connection)
    return {
        "name": connection.name, "description": connection.description, "connector": connection.connector_id,
        "active": connection.active, "deleted": connection.deleted, "config": dict(connection.config_values or {}),
        "secrets": {k: "set" for k in stored_secrets(connection)},
        "secrets_to_reenter": secrets_to_reenter(connection),
        "scope": "everyone" if scope.all_access else sorted(f"{k}:{i}:{v}" for (k, i), v in scope.entries.items()),
        "all_can_create": scope.all_can_create, "conflict_policy": connection.conflict_policy,
    }


def save_connection(connection: Connection | None, *, connector: Connector, name: str, description: str,
                    values: dict, fields: list[dict], scope: Scope, conflict_policy: str,
                    test_token_value: str | None, actor=None, **ctx) -> Connection:
    """Create or update a connection (OK in the dialog).

    New connections, and any change of config values, need a passed Test of exactly those values. Config
    values can change only while the connection is inactive. Then SaveConnection → TestConnection → catalogue
    refresh at the connector, and only if all of that worked, one database transaction. A "Specific users and
    groups" scope must name someone (:func:`scope_problem`; ServiceError field "scope"), checked before any call.
    """
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the connection a name.", "name")
    if len(name) > 120:
        raise ServiceError("The name can be at most 120 characters.", "name")
    clash = db.session.scalar(select(Connection).where(func.lower(Connection.name) == name.lower(),
                                                       Connection.deleted.is_(False)))
    if clash is not None and (connection is None or clash.id != connection.id):
        raise ServiceError("Another ERP connection already has this name.", "name")
    if connector.deleted:
        raise ServiceError("This sync connector is deleted; restore it first.", "connector")
    if connection is not None and connection.connector_id != connector.id:
        raise ServiceError("The connector of a saved connection cannot be changed.", "connector")
    problem = scope_problem(scope)
    if problem:
        raise ServiceError(problem, "scope")

    stored = full_config(connection) if connection is not None else None
    config_changed = connection is None or stored != values
    if config_changed and connection is not None and connection.active:
        raise ServiceError("Configuration fields can only be changed while the connection is inactive. "
                           "Deactivate it first.")
    if config_changed and not token_matches(test_token_value, connector, values):
        raise ServiceError("Test the connection with these values before saving.", "test")

    guid = connection.guid if connection is not None else str(uuid.uuid4())
    catalogue = None
    if config_changed:
        client = client_for(connector)
        try:
            client.save_connection(guid, values)
            client.test_connection(guid)
        except ConnectorError as exc:
            raise ServiceError(f"The connector did not accept the connection: {exc.user_message}") from exc
        catalogue = fetch_catalogue(connector, guid)

    before = snapshot(connection) if connection is not None else None
    secrets = secret_keys(fields)
    if connection is None:
        connection = Connection(connector_id=connector.id, guid=guid, active=False)
        db.session.add(connection)
    connection.name, connection.description = name, (description or "").strip()
    connection.conflict_policy = conflict_policy
    if config_changed:
        connection.config_values = {k: v for k, v in values.items() if k not in secrets}
        connection.secrets_encrypted = crypto.encrypt_json({k: v for k, v in values.items() if k in secrets})
        connection.last_test_ok, connection.last_test_at = True, utcnow()
        connection.last_test_message = "Tested when saved."
    _apply_scope(connection, scope)
    db.session.flush()
    if catalogue is not None:
        apply_catalogue(connection, catalogue)
    audit.record("connection.create" if before is None else "connection.update", connection, before=before,
                 after=snapshot(connection), actor=actor, **ctx)
    db.session.commit()
    return connection


# ---------------------------------------------------------------------------------------------- catalogue

@dataclass
class Catalogue:
    """What the connector says it supports: {actor type: (fields, searchable keys)}."""
    actor_types: dict[str, tuple[list[dict], list[str]]]


def fetch_catalogue(connector: Connector, guid: str) -> Catalogue:
    client = client_for(connector)
    try:
        types = [t for t in client.get_supported_actor_types(guid) if t in ACTOR_TYPES]
        result = {}
        for actor_type in types:
            fields = client.get_supported_actor_type_fields(guid, actor_type)
            searchable = client.get_searchable_fields(guid, actor_type)
            result[actor_type] = (fields, searchable)
    except ConnectorError as exc:
        raise ServiceError(f"Could not read the actor types and fields: {exc.user_message}") from exc
    return Catalogue(result)


@dataclass
class RefreshReport:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    updated: int = 0


def _premap_target(crm_type: str, field_key: str, field_type: str) -> str | None:
    from portal.services.values import compatible

    wanted = field_key.upper()
    for crm_field in crm_fields(crm_type):
        if wanted in crm_field.erp_aliases and compatible(field_type, crm_field.type)[0]:
            return crm_field.key
    return None


def apply_catalogue(connection: Connection, catalogue: Catalogue) -> RefreshReport:
    """Upsert cached actor types and fields; keep mappings; flag what vanished; pre-map new fields by name
    (with no direction, so nothing syncs until an admin chooses one)."""
    report = RefreshReport()
    for config in connection.actor_types:
        config.supported = config.erp_actor_type in catalogue.actor_types
    for actor_type, (fields, searchable) in catalogue.actor_types.items():
        config = connection.actor_type(actor_type)
        if config is None:
            config = ActorTypeConfig(erp_actor_type=actor_type, crm_type=ACTOR_CRM_TYPE[actor_type],
                                     is_active=False)
            connection.actor_types.append(config)
        config.supported = True
        config.searchable_fields = [k for k in searchable if isinstance(k, str)]
        existing = {f.field_key: f for f in config.fields}
        taken = {f.crm_field for f in config.fields if f.crm_field}
        next_rank = max([f.rank for f in config.fields] or [0]) + 1
        seen = set()
        for meta in sorted_fields(fields):
            key = meta["FieldKey"]
            seen.add(key)
            erp_field = existing.get(key)
            if erp_field is None:
                erp_field = ErpField(field_key=key, rank=next_rank)
                next_rank += 1
                config.fields.append(erp_field)
                report.added.append(f"{actor_type}.{key}")
                target = _premap_target(config.crm_type, key, meta.get("FieldType") or FieldType.TEXT)
                if target and target not in taken:
                    erp_field.crm_field = target
                    taken.add(target)
                if key in config.searchable_fields or meta.get("Access") == FieldAccess.READ_ONLY:
                    erp_field.show_in_search = key in config.searchable_fields
            else:
                report.updated += 1
            erp_field.display_name = meta.get("DisplayName") or key
            erp_field.description = meta.get("DisplayDescription") or ""
            erp_field.field_type = meta.get("FieldType") or FieldType.TEXT
            erp_field.list_name = meta.get("ListName") or ""
            erp_field.meta_default = str(meta.get("DefaultValue") or "")
            erp_field.max_length = int(meta.get("MaxLength") or 0)
            erp_field.access = meta.get("Access") or FieldAccess.NORMAL
            erp_field.connector_rank = int(meta.get("Rank") or 0)
            erp_field.missing_in_erp = False
            if erp_field.access == FieldAccess.MANDATORY:
                erp_field.mandatory = True
            if erp_field.access == FieldAccess.READ_ONLY:
                erp_field.sync_to_erp = False
        for key, erp_field in existing.items():
            if key not in seen and not erp_field.missing_in_erp:
                erp_field.missing_in_erp = True
                report.missing.append(f"{actor_type}.{key}")
    connection.fields_refreshed_at = utcnow()
    return report


def refresh_fields(connection: Connection, actor=None, **ctx) -> RefreshReport:
    catalogue = fetch_catalogue(connection.connector, connection.guid)
    report = apply_catalogue(connection, catalogue)
    audit.record("connection.refresh_fields", connection,
                 after={"added": report.added, "missing": report.missing}, actor=actor, **ctx)
    db.session.commit()
    return report


# ---------------------------------------------------------------------------------------------- lifecycle

def activation_problems(connection: Connection) -> list[str]:
    """Every reason why the connection cannot be activated (empty = it can). Extended by mapping rules."""
    problems = []
    if connection.deleted:
        problems.append("The connection is deleted.")
    if connection.connector.deleted:
        problems.append("Its sync connector is deleted.")
    if secrets_to_reenter(connection):
        problems.append("Its stored password(s) were cleared when its address changed: enter them again in "
                        "Configure and test the connection.")
    elif not connection.last_test_ok:
        problems.append("The connection has not passed a test.")
    try:
        from portal.services.mapping import mapping_problems
    except ImportError:  # mapping rules arrive with the mapping screens
        mapping_problems = None
    if mapping_problems is not None:
        problems.extend(mapping_problems(connection))
    return problems


def set_active(connection: Connection, active: bool, actor=None, **ctx) -> list[str]:
    """Activate (refused with reasons) or deactivate (always allowed). Returns the reasons, [] on success."""
    if active:
        problems = activation_problems(connection)
        if problems:
            return problems
    if connection.active != active:
        connection.active = active
        audit.record("connection.activate" if active else "connection.deactivate", connection,
                     before={"active": not active}, after={"active": active}, actor=actor, **ctx)
        if active:
            from portal.services.sync_settings import ensure_in_priority

            ensure_in_priority(connection.id)
        db.session.commit()
    return []


def test_saved_connection(connection: Connection, actor=None, **ctx) -> TestResult:
    """Test ERP connection (the list button): TestConnection on the stored config. Refused without a call while
    cleared secrets wait to be entered again (the connector would get the config without them)."""
    if secrets_to_reenter(connection):
        result = TestResult(False, "Its password(s) were cleared when its address changed: enter them again in "
                                   "Configure (Test there, then OK).")
        connection.last_test_ok, connection.last_test_at = False, utcnow()
        connection.last_test_message = result.message
        audit.record("connection.test", connection, after={"ok": False, "message": result.message[:200]},
                     actor=actor, **ctx)
        db.session.commit()
        return result
    try:
        reply = client_for(connection.connector).test_connection(connection.guid)
        result = TestResult(True, reply.user_explanation or "The connection works.", reply.warning)
    except ConnectorError as exc:
        result = TestResult(False, exc.user_message)
    connection.last_test_ok = result.ok
    connection.last_test_at = utcnow()
    connection.last_test_message = result.warning or result.message
    audit.record("connection.test", connection, after={"ok": result.ok, "message": result.message[:200]},
                 actor=actor, **ctx)
    db.session.commit()
    return result


def delete_connection(connection: Connection, actor=None, **ctx) -> str | None:
    """Soft delete. The connector is told (DeleteConnection) so it can clean up; if it cannot be reached the
    deletion still happens and the returned warning says so."""
    warning = None
    try:
        client_for(connection.connector, retries=0).delete_connection(connection.guid)
    except ConnectorError as exc:
        warning = f"The connector was not told about the deletion ({exc.user_message})."
    before = {"active": connection.active, "deleted": connection.deleted}
    connection.active, connection.deleted = False, True
    audit.record("connection.delete", connection, before=before, after={"active": False, "deleted": True},
                 actor=actor, **ctx)
    db.session.commit()
    return warning


def restore_connection(connection: Connection, actor=None, **ctx) -> str | None:
    """Undelete (inactive). The stored config is sent to the connector again; if that fails the connection
    still comes back, needing a test before activation."""
    clash = db.session.scalar(select(Connection).where(func.lower(Connection.name) == connection.name.lower(),
                                                       Connection.deleted.is_(False)))
    if clash is not None:
        raise ServiceError(f"Another ERP connection is called {connection.name}; rename it first.")
    if connection.connector.deleted:
        raise ServiceError("Its sync connector is deleted; restore the connector first.")
    warning = None
    try:
        client_for(connection.connector).save_connection(connection.guid, full_config(connection))
    except ConnectorError as exc:
        connection.last_test_ok = False
        warning = f"The connector did not take the configuration back ({exc.user_message}); test it again."
    connection.deleted = False
    audit.record("connection.restore", connection, before={"deleted": True}, after={"deleted": False},
                 actor=actor, **ctx)
    db.session.commit()
    return warning
