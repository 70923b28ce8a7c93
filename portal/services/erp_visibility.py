"""Whether a user gets the ERP tab on a Company, Contact or Project screen (spec §2.1, §6).

The CRM pages call ``erp_tab_visible(user, crm_type, record_id)`` (import-guarded) before rendering the tab link.
The tab shows only to users who hold an ERP Sync licence and are in the scope of at least one active connection
that has an active actor type mapped to this kind of record. The same rule decides which sections the tab shows
(``portal.services.erp_tab.visible_connections``), so the link and the panel never disagree. The licence is the
per-user seat (``User.erp_licence``) alone: there is no site-wide feature switch (docs/decisions.md, "Issue #18:
smaller points", 4).
"""

from __future__ import annotations

from portal.models import CrmType


def erp_tab_visible(user, crm_type: str, record_id: int | None = None) -> bool:
    """True when ``user`` should see the ERP tab on this kind of record. Never raises for bad input."""
    if user is None or not getattr(user, "erp_licence", False) or not getattr(user, "is_active", True):
        return False
    try:
        crm_type = CrmType(str(crm_type))
    except ValueError:
        return False
    from portal.services.erp_tab import visible_connections

    return bool(visible_connections(user, crm_type))
