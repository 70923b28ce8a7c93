"""Connectors built into the portal, reachable as ``builtin:<name>`` URLs through the in-process transport.

Each entry is a factory ``(config: Mapping) -> ConnectorService`` where ``config`` is the Flask app config
(for paths such as DEMO_ERP_DB). Instances are cached per (name, path) by ``get_builtin``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from portal.connectors.service import ConnectorService

_FACTORIES: dict[str, Callable[[Mapping], ConnectorService]] = {}
_INSTANCES: dict[tuple, ConnectorService] = {}
_LOCK = threading.Lock()


def register(name: str):
    def decorator(factory: Callable[[Mapping], ConnectorService]):
        _FACTORIES[name] = factory
        return factory

    return decorator


def get_builtin(name: str, config: Mapping) -> ConnectorService | None:
    """The built-in connector ``name`` for this app config, or None when there is no such connector."""
    _load()
    factory = _FACTORIES.get(name)
    if factory is None:
        return None
    key = (name, config.get("DEMO_ERP_DB"), config.get("TRYTON_CONNECTOR_STATE"), config.get("INSTANCE_PATH"))
    with _LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = factory(config)
        return _INSTANCES[key]


def _load() -> None:
    # Imported lazily so each module registers itself without import cycles.
    from portal.connectors.builtin import demo, tryton  # noqa: F401
