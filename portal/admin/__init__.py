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


@bp.app_template_global("next_sync_text")
def _next_sync_text(settings) -> str:
    """When the next periodic sync starts ("due now" right after turning it on), for the Automatic sync block."""
    from portal.services.sync.runs import next_due_text

    return next_due_text(settings)


from portal.admin import (  # noqa: E402,F401
    routes_alerts,
    routes_audit,
    routes_connections,
    routes_connectors,
    routes_fields,
    routes_import,
    routes_import_preview,
    routes_import_runs,
    routes_import_undo,
    routes_issues,
    routes_lists,
    routes_mappings,
    routes_mappings_defaults,
    routes_mappings_lists,
    routes_runs,
    routes_sync,
    routes_users,
)
