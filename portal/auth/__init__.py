from flask import Blueprint

bp = Blueprint("auth", __name__)


@bp.record_once
def _per_app_setup(state) -> None:
    # Every app that serves the sign-in gets its own rate-limit counters (portal/security/limits.py).
    from portal.security import limits

    limits.init_app(state.app)


from portal.auth import routes  # noqa: E402,F401
