"""Connectors built into the portal, reachable as ``builtin:<name>`` URLs through the in-process transport.

Each entry is a factory ``(config: Mapping) -> ConnectorService`` where ``config`` is the Flask app config
(for paths such as DEMO_ERP_DB, and CONNECTOR_ALLOWED_NETWORKS: a built-in connector that calls out makes every
request through ``portal.security.urlguard.guarded_session``). Instances are cached per (name, paths, allowlist)
by ``get_builtin``; ``names()`` lists the registered connectors (the tests enumerate them).
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
    key = (name, config.get("DEMO_ERP_DB"), config.get("TRYTON_CONNECTOR_STATE"), config.get("INSTANCE_PATH"),
           tuple(config.get("CONNECTOR_ALLOWED_NETWORKS") or ()))
    with _LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = factory(config)
        return _INSTANCES[key]


def names() -> list[str]:
    """The names of every built-in connector (``builtin:<name>``)."""
    _load()
    return sorted(_FACTORIES)


def _load() -> None:
    # Imported lazily so each module registers itself without import cycles.
    from portal.connectors.builtin import demo, tryton  # noqa: F401
