"""The Demo ERP's own pages (/demo-erp/): browse, edit and delete records *inside the ERP*.

The Demo ERP simulates an external system, so these pages talk to it only through its own API
(``DemoErpConnector``), never through the portal's models: an edit here bumps LastModified and reaches the
portal on its next sync, exactly like a change made in a real ERP. Any signed-in user may use them.
"""

from flask import Blueprint, current_app

from portal.connectors.builtin.demo import DemoErpConnector

bp = Blueprint("demo_erp", __name__, url_prefix="/demo-erp")


def demo_connector() -> DemoErpConnector:
    """The shared Demo ERP of this app (the same instance the ``builtin:demo`` connector uses)."""
    return DemoErpConnector.for_path(current_app.config["DEMO_ERP_DB"])


from portal.demo_erp import routes  # noqa: E402,F401
