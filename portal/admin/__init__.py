"""Settings and maintenance: admins only, enforced for the whole blueprint (not per view)."""

from flask import Blueprint

from portal.web import require_admin

bp = Blueprint("admin", __name__, url_prefix="/settings")


@bp.before_request
def _admins_only():
    require_admin()


@bp.app_template_global("erp_not_answering")
def _erp_not_answering(connection) -> str:
    from portal.services.connectors import not_answering

    return not_answering(connection)


from portal.admin import (  # noqa: E402,F401
    routes_alerts,
    routes_audit,
    routes_connections,
    routes_connectors,
    routes_import,
    routes_issues,
    routes_lists,
    routes_mappings,
    routes_runs,
    routes_sync,
    routes_users,
)
