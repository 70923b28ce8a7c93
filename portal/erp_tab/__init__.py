"""The ERP tab on Company, Contact and Project screens (issue #5)."""

from flask import Blueprint

bp = Blueprint("erp_tab", __name__)
