"""ERP connections: config fields, test-before-save, save, scope, actor/field catalogue cache, activation,
soft delete and restore (spec §1.4–1.6).

Connector calls are always made outside a database write transaction: read, call, then write in one short
transaction, so a slow ERP never holds a lock and a failure never leaves half a connection behind.

The package, lowest layer first (each module imports only those above it):

* ``config``: the config fields (GetConfigData, List items), their defaults and the parsing of submitted values;
* ``secret_binding``: stored and cleared secrets, the address fields they are bound to, sealing between steps;
* ``config_check``: Test before save (TestConfigData) and the token proving which values passed;
* ``scope``: who may use the connection;
* ``catalogue``: the actor types and fields the connector supports, cached in the database;
* ``saving``: saving a connection (OK in the dialog) and its audit snapshot;
* ``lifecycle``: activation, the Test button, soft delete and restore.

Callers use the names re-exported here (``from portal.services import connections``); a test that replaces a
helper must patch the module that looks it up (e.g. ``connections.saving.client_for``), not this package.
"""

from __future__ import annotations

import logging

from portal.models import ZERO_GUID
from portal.services.connections.catalogue import (
    Catalogue,
    RefreshReport,
    apply_catalogue,
    fetch_catalogue,
    refresh_fields,
)
from portal.services.connections.config import (
    VALUE_TYPES,
    collect_config,
    config_fields,
    config_lists,
    default_for,
    expand_default,
    installation_serial,
    parse_config_value,
    secret_keys,
    sorted_fields,
)
from portal.services.connections.config_check import TestResult, test_config, test_token, token_matches
from portal.services.connections.lifecycle import (
    activation_problems,
    delete_connection,
    restore_connection,
    set_active,
    test_saved_connection,
)
from portal.services.connections.saving import save_connection, snapshot
from portal.services.connections.scope import EMPTY_SCOPE, Scope, scope_of, scope_problem, scope_summary
from portal.services.connections.secret_binding import (
    REENTER_KEY,
    SEAL_PURPOSE,
    address_keys,
    address_values,
    clear_secrets,
    full_config,
    moved_addresses,
    open_secret,
    seal_binding,
    seal_secret,
    secrets_to_reenter,
    stored_secrets,
    submitted_values,
)

log = logging.getLogger(__name__)

__all__ = [
    "EMPTY_SCOPE",
    "REENTER_KEY",
    "SEAL_PURPOSE",
    "VALUE_TYPES",
    "ZERO_GUID",
    "Catalogue",
    "RefreshReport",
    "Scope",
    "TestResult",
    "activation_problems",
    "address_keys",
    "address_values",
    "apply_catalogue",
    "clear_secrets",
    "collect_config",
    "config_fields",
    "config_lists",
    "default_for",
    "delete_connection",
    "expand_default",
    "fetch_catalogue",
    "full_config",
    "installation_serial",
    "moved_addresses",
    "open_secret",
    "parse_config_value",
    "refresh_fields",
    "restore_connection",
    "save_connection",
    "scope_of",
    "scope_problem",
    "scope_summary",
    "seal_binding",
    "seal_secret",
    "secret_keys",
    "secrets_to_reenter",
    "set_active",
    "snapshot",
    "sorted_fields",
    "stored_secrets",
    "submitted_values",
    "test_config",
    "test_saved_connection",
    "test_token",
    "token_matches",
]
