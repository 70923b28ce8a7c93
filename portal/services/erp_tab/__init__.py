"""The ERP tab's business rules (spec §2, §3.4; issue #5): who sees which connection, live values, search,
compare, connect, create in ERP, disconnect and Sync now.

Plain values and models in, dataclasses out; never ``request``. Every rule failure raises an
:class:`ErpTabError` whose ``message`` can be shown to the user as is and whose ``status`` is the HTTP status
the blueprint answers with. No database transaction is held open while a connector is called (erp_calls.py).

The modules, lower layers first (a module imports only the ones above it):

* errors.py — ErpTabError and its kinds (Refused, NotFound, RuleBroken, ConnectorFailed, …);
* fields.py — which ERP fields show where (tab, search columns, ask-user) and values as text;
* erp_calls.py — the connector client of a web request, the released transaction, the ERP's list texts;
* sections.py — scope (Access, visible connections), a record's Section and the rule checks (``require_*``);
* live.py — the linked actor's values, read live;
* actor_search.py — finding the actor to link: simple and advanced search;
* unmappable.py — values one side cannot hold, and why they are left as they are;
* ask_user.py — the admin's ask-user fields: starting values, answers checked;
* comparison.py — the "select correct field values" step of Connect;
* linking.py — what Connect and Create share: the outcome, the new link's base, labels, the audit text;
* connecting.py — Connect and Disconnect;
* create_in_erp.py — Create in ERP (the dialog's new actor, CreateActor, the link);
* syncing.py — Sync now.

Callers use this package's names (``from portal.services import erp_tab``); a test that replaces a helper must
patch the module that looks it up (e.g. ``erp_tab.erp_calls``), not this package.
"""

from portal.services.erp_tab.actor_search import (
    MAX_SEARCH_TEXT,
    OPERATOR_LABELS,
    PARENT_KEYS,
    SEARCH_LIMIT,
    Criterion,
    ResultRow,
    SearchResult,
    advanced_search,
    criteria,
    parse_restrictions,
    search,
)
from portal.services.erp_tab.comparison import CompareRow, Comparison, compare
from portal.services.erp_tab.connecting import connect, disconnect
from portal.services.erp_tab.create_in_erp import NONCE_RE, NewActor, create, idempotency_key, new_actor
from portal.services.erp_tab.erp_calls import DEFAULT_TIMEOUT, get_lists
from portal.services.erp_tab.errors import (
    ConnectorFailed,
    ErpTabError,
    InvalidInput,
    NotFound,
    Refused,
    RuleBroken,
    StaleComparison,
)
from portal.services.erp_tab.fields import (
    ask_fields,
    crm_value_text,
    display_value,
    fields_by_key,
    search_fields,
    tab_fields,
    value_text,
)
from portal.services.erp_tab.linking import LinkOutcome, link_base
from portal.services.erp_tab.live import SHARED_READ_WAIT, LiveValues, forget_live_values, live_values
from portal.services.erp_tab.sections import (
    ACTOR_ORDER,
    Access,
    Section,
    crm_type_of,
    load_record,
    require_connect,
    require_create,
    require_disconnect,
    section_for,
    sections_for,
    sync_status,
    tab_actor_types,
    user_access,
    visible_connections,
)
from portal.services.erp_tab.syncing import SyncOutcome, sync_now
from portal.services.erp_tab.unmappable import SHOWN_LENGTH, Unmappable

__all__ = [
    "ACTOR_ORDER", "DEFAULT_TIMEOUT", "MAX_SEARCH_TEXT", "NONCE_RE", "OPERATOR_LABELS", "PARENT_KEYS",
    "SEARCH_LIMIT", "SHARED_READ_WAIT", "SHOWN_LENGTH",
    "Access", "CompareRow", "Comparison", "ConnectorFailed", "Criterion", "ErpTabError", "InvalidInput",
    "LinkOutcome", "LiveValues", "NewActor", "NotFound", "Refused", "ResultRow", "RuleBroken", "SearchResult",
    "Section", "StaleComparison", "SyncOutcome", "Unmappable",
    "advanced_search", "ask_fields", "compare", "connect", "create", "criteria", "crm_type_of", "crm_value_text",
    "disconnect", "display_value", "fields_by_key", "forget_live_values", "get_lists", "idempotency_key",
    "link_base", "live_values", "load_record", "new_actor", "parse_restrictions", "require_connect",
    "require_create", "require_disconnect", "search", "search_fields", "section_for", "sections_for", "sync_now",
    "sync_status", "tab_actor_types", "tab_fields", "user_access", "value_text", "visible_connections",
]
