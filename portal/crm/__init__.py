from flask import Blueprint

bp = Blueprint("crm", __name__)

from portal.crm import routes  # noqa: E402,F401
