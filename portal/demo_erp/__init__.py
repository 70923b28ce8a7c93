"""The Demo ERP's own pages (/demo-erp/): browse, edit and delete records *inside the ERP*.

The Demo ERP simulates an external system, so these pages talk to it only through its own API
(``DemoErpConnector``), never through the portal's models: an edit here bumps LastModified and reaches the
portal on its next sync, exactly like a change made in a real ERP.

They stand in for the ERP's own administration screens, so they are for admins only (enforced for the whole
blueprint, like Settings), and they exist only while the demo is on: ``create_app`` registers this blueprint only
with ``PORTAL_DEMO_DATA=on`` (otherwise every /demo-erp/ URL is a 404).
"""

from flask import Blueprint, current_app

from portal.connectors.builtin.demo import DemoErpConnector
from portal.web import require_admin

bp = Blueprint("demo_erp", __name__, url_prefix="/demo-erp")


@bp.before_request
def _admins_only():
    require_admin()


def enabled(app) -> bool:
    """Whether the Demo ERP pages belong in this app (the demo is on)."""
    return bool(app.config.get("DEMO_DATA"))


def demo_connector() -> DemoErpConnector:
    """The shared Demo ERP of this app (the same instance the ``builtin:demo`` connector uses)."""
    return DemoErpConnector.for_path(current_app.config["DEMO_ERP_DB"])


from portal.demo_erp import routes  # noqa: E402,F401
