"""The ERP tab on Company, Contact and Project screens (issue #5)."""

from flask import Blueprint

bp = Blueprint("erp_tab", __name__)

from portal.erp_tab import routes  # noqa: E402,F401
