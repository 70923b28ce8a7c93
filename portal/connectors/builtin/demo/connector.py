"""``DemoErpConnector``: the Demo ERP and its connector in one object, registered as ``builtin:demo``.

It is assembled from the storage (``storage``), the protocol methods (``protocol_connections``,
``protocol_reads``, ``protocol_writes``) and the ERP's own side (``erp_side``); ``handle`` prepares the database
before answering any method.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from portal.connectors.builtin import register
from portal.connectors.builtin.demo.erp_side import ErpSide
from portal.connectors.builtin.demo.protocol_reads import ReadMethods
from portal.connectors.builtin.demo.protocol_writes import WriteMethods
from portal.connectors.builtin.demo.storage import _REGISTRY_LOCK
from portal.connectors.protocol import error_response
from portal.connectors.service import ConnectorService

log = logging.getLogger(__name__)

_INSTANCES: dict[str, DemoErpConnector] = {}


class DemoErpConnector(ReadMethods, WriteMethods, ErpSide, ConnectorService):
    """The Demo ERP and its connector. ``path`` is the SQLite file (created and seeded on first use)."""

    @classmethod
    def for_path(cls, path: str | Path) -> DemoErpConnector:
        """The shared instance for this database file (the registry factory and the /demo-erp/ pages use it)."""
        key = str(Path(path).resolve())
        with _REGISTRY_LOCK:
            if key not in _INSTANCES:
                _INSTANCES[key] = cls(path)
            return _INSTANCES[key]

    def handle(self, method: str, body: dict) -> dict:
        try:
            self._ensure_ready()
        except Exception as exc:  # answer in the response, like every other failure
            log.exception("Demo ERP database %s could not be prepared", self.path)
            return error_response("The Demo ERP database could not be opened.", repr(exc), "INTERNAL_ERROR")
        return super().handle(method, body)


@register("demo")
def make_demo_connector(config: Mapping) -> DemoErpConnector:
    """The Demo ERP on the SQLite file ``config["DEMO_ERP_DB"]``."""
    return DemoErpConnector.for_path(config["DEMO_ERP_DB"])
