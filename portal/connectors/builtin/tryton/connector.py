"""``TrytonConnector``: the protocol methods for a Tryton database in one object, registered as
``builtin:tryton``.

It is assembled from the protocol methods (``protocol_reads``, ``protocol_searches``, ``protocol_writes``; the
config, catalogue and list methods of ``protocol_connections`` come in through ``protocol_writes``) on the base
``connections.TrytonConnections``; ``make_connector`` builds it from the app config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from portal.connectors.builtin import register
from portal.connectors.builtin.tryton.protocol_reads import ReadMethods
from portal.connectors.builtin.tryton.protocol_searches import SearchMethods
from portal.connectors.builtin.tryton.protocol_writes import WriteMethods
from portal.connectors.service import ConnectorService


class TrytonConnector(ReadMethods, SearchMethods, WriteMethods, ConnectorService):
    """The protocol methods (see portal/connectors/protocol.py) for a Tryton database."""


def state_path(config: Mapping) -> str:
    explicit = config.get("TRYTON_CONNECTOR_STATE")
    if explicit:
        return str(explicit)
    instance = config.get("INSTANCE_PATH")
    if not instance:
        try:
            from flask import current_app

            instance = current_app.instance_path
        except RuntimeError:  # no app context
            instance = "instance"
    return os.path.join(instance, "tryton_connector.sqlite")


@register("tryton")
def make_connector(config: Mapping) -> TrytonConnector:
    """The built-in ``tryton`` connector; configs are kept in TRYTON_CONNECTOR_STATE (default
    instance/tryton_connector.sqlite), passwords encrypted with ENCRYPTION_KEYS when present."""
    return TrytonConnector(state_path(config), secret_keys=config.get("ENCRYPTION_KEYS") or None,
                           allowed_networks=config.get("CONNECTOR_ALLOWED_NETWORKS") or ())
