"""A connection's configuration: its config fields (GetConfigData), the checks of a config before it is tested
or saved (with the save-time half of the URL guard), and the JSON-RPC client a config describes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from portal.connectors.builtin.tryton_rpc import TrytonClient
from portal.connectors.protocol import field_metadata
from portal.connectors.service import ProtocolError
from portal.security.urlguard import UrlNotAllowed, check_connector_url

CFG_URL, CFG_DATABASE, CFG_USER, CFG_PASSWORD, CFG_COMPANY, CFG_TIMEOUT = (
    "url", "database", "user", "password", "company", "timeout")
DEFAULT_URL = "http://127.0.0.1:8765"
CONFIG_FIELDS = [
    field_metadata(CFG_URL, "Tryton server URL", description="Base URL of trytond, e.g. http://127.0.0.1:8765",
                   default=DEFAULT_URL, access="Mandatory", rank=1),
    field_metadata(CFG_DATABASE, "Database", description="Name of the Tryton database", access="Mandatory",
                   rank=2),
    field_metadata(CFG_USER, "User", description="Tryton login", default="admin", access="Mandatory", rank=3),
    field_metadata(CFG_PASSWORD, "Password", "Password", description="Password of that Tryton user", rank=4),
    field_metadata(CFG_COMPANY, "Company", description="Tryton company (id or name) for projects; blank = the "
                   "user's current company", rank=5),
    field_metadata(CFG_TIMEOUT, "Timeout (seconds)", "Integer", description="How long to wait for Tryton",
                   default="30", rank=6),
]


def _config_errors(info: Mapping) -> list[str]:
    errors = []
    url = str(info.get(CFG_URL) or "").strip()
    if not url:
        errors.append("The Tryton server URL is missing.")
    elif not re.match(r"^https?://[^/\s@]+(/[^\s]*)?$", url):
        errors.append(f"The Tryton server URL '{url}' must look like http://host:port.")
    if not str(info.get(CFG_DATABASE) or "").strip():
        errors.append("The Tryton database name is missing.")
    if not str(info.get(CFG_USER) or "").strip():
        errors.append("The Tryton user is missing.")
    timeout = info.get(CFG_TIMEOUT)
    if timeout not in (None, ""):
        try:
            if not 1 <= float(timeout) <= 600:
                raise ValueError
        except (TypeError, ValueError):
            errors.append("The timeout must be a number of seconds between 1 and 600.")
    return errors


def _check_address(info: Mapping, allowed_networks: Sequence[str]) -> None:
    """The save-time half of the URL guard (the connect-time half is the client's transport): the host must
    resolve only to addresses the portal may connect to. Raises ADDRESS_NOT_ALLOWED before anything is sent."""
    try:
        check_connector_url(str(info.get(CFG_URL) or "").strip(), allowed_networks)
    except UrlNotAllowed as exc:
        message = exc.user_message.replace("The connector host", "The Tryton server host", 1)
        raise ProtocolError(message, exc.tech_message, "ADDRESS_NOT_ALLOWED") from exc


def checked_config(info: object, allowed_networks: Sequence[str]) -> dict:
    """A request's ConnectionInfo as TestConfigData and SaveConnection accept it: an object with valid values and an
    address inside the allowed networks, else the protocol error that says why."""
    if not isinstance(info, dict):
        raise ProtocolError("ConnectionInfo must be an object.", error_code="BAD_REQUEST")
    errors = _config_errors(info)
    if errors:
        raise ProtocolError(" ".join(errors), error_code="INVALID_CONFIG")
    _check_address(info, allowed_networks)
    return info


def make_client(info: Mapping, allowed_networks: Sequence[str] = ()) -> TrytonClient:
    """A JSON-RPC client for ``info`` whose every request goes through the guarded transport with
    ``allowed_networks`` (PORTAL_CONNECTOR_ALLOWED_NETWORKS)."""
    timeout = info.get(CFG_TIMEOUT)
    return TrytonClient(str(info.get(CFG_URL) or DEFAULT_URL).strip(), str(info.get(CFG_DATABASE) or "").strip(),
                        str(info.get(CFG_USER) or "").strip(), str(info.get(CFG_PASSWORD) or ""),
                        timeout=float(timeout) if timeout not in (None, "") else 30.0,
                        allowed_networks=allowed_networks)
