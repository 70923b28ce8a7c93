"""First-run setup: the first admin, the Demo ERP connector, demo CRM records and default lists."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from portal.config import check_admin_password
from portal.extensions import db
from portal.models import Connector, CrmList, ListItem, Role, SyncSettings, User
from portal.security import password_policy

log = logging.getLogger(__name__)

DEMO_CONNECTOR_URL = "builtin:demo"

DEFAULT_LISTS = {
    CrmList.COUNTRY: ["Norway", "Sweden", "Denmark", "Finland", "Germany", "Netherlands", "United Kingdom",
                      "France", "Spain", "Italy", "Switzerland", "Austria", "Belgium", "Poland", "Ireland",
                      "United States", "Canada", "Japan", "Australia", "Brazil"],
    CrmList.BUSINESS: ["Manufacturing", "Retail", "Wholesale", "IT", "Consulting", "Public sector", "Finance",
                       "Logistics", "Healthcare", "Energy"],
    CrmList.CATEGORY: ["Customer", "Prospect", "Supplier", "Partner", "Competitor"],
    CrmList.PROJECT_STATUS: ["Planned", "In progress", "On hold", "Completed"],
}


def sync_settings() -> SyncSettings:
    """The single settings row, created on first use."""
    settings = db.session.get(SyncSettings, 1)
    if settings is None:
        settings = SyncSettings(id=1)
        db.session.add(settings)
        db.session.flush()
    return settings


def ensure_first_admin(email: str, password: str | None) -> tuple[User | None, str | None]:
    """On an empty user table create the first admin. Returns (user, generated_password_or_None).

    A given password must pass the password policy (``ConfigError`` otherwise, as ``load_config`` raises for
    PORTAL_ADMIN_PASSWORD); a generated one always does."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None, None
    generated = None
    if not password:
        generated = password = password_policy.generate()
    check_admin_password(password, email)
    user = User(email=email.lower(), name="Administrator", role=Role.ADMIN, erp_licence=True)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user, generated


def ensure_default_lists() -> None:
    if db.session.scalar(select(func.count()).select_from(ListItem)):
        return
    for list_name, names in DEFAULT_LISTS.items():
        for rank, name in enumerate(names):
            db.session.add(ListItem(list_name=list_name, name=name, rank=rank))
    db.session.commit()


def ensure_demo_connector() -> Connector | None:
    """Register the built-in Demo ERP connector once (an admin may delete it afterwards)."""
    if db.session.scalar(select(func.count()).select_from(Connector)):
        return None
    connector = Connector(name="Demo ERP", url=DEMO_CONNECTOR_URL)
    db.session.add(connector)
    db.session.commit()
    return connector


def initialise(config) -> str | None:
    """Everything a fresh database needs. Returns a generated admin password to print, if any."""
    sync_settings()
    db.session.commit()
    ensure_default_lists()
    _user, generated = ensure_first_admin(config["ADMIN_EMAIL"], config.get("ADMIN_PASSWORD"))
    if config.get("DEMO_DATA"):
        ensure_demo_connector()
        from portal.services.demo_data import seed_demo_crm

        seed_demo_crm()
    return generated
