"""Connection configuration: field mapping, list mapping, default values, rank and the activation rules they feed
(spec §1.6–1.10).

Everything an admin changes here goes through this package: the rules (which CRM field an ERP field may map to,
which direction is possible and why not), validation of a whole submitted row or form *before* anything is
written (nothing is ever saved half), the audit trail, and ``mapping_problems(connection)``, which
``portal.services.connections.activation_problems`` adds to the reasons an activation is refused.

Decisions (see docs/decisions.md, "Editing mappings while a connection is active"):

* Mappings, defaults, list mappings and rank may be edited while the connection is active. A change that would
  make the active connection invalid (it would add a reason to ``mapping_problems``) is refused, with the reason.
* Re-targeting a field (another CRM field, or a changed list item mapping) changes what the values already agreed
  on by the two sides (``Link.base``, keyed by ERP field key) mean; so the agreed value of that field is forgotten
  on every link of the actor type, and the next sync treats the field like one of a newly linked record. While a
  sync of the connection is queued or running such a change is refused (the run works on its own snapshot of the
  mapping and would write back base values in the old meaning).
* A Mandatory ERP field of an active actor type needs a value when the CRM creates an ERP actor: a direction to
  the ERP, a fixed default, or "ask user" (the user creating the actor must then fill it in). A ReadOnly field is
  assigned by the ERP and never needs one.

The package, lowest layer first (each module imports only those above it):

* ``rules``: what may map to what, the validation of a row, and ``mapping_problems``;
* ``saving``: what every save shares (the audit entry, the commit guarded by the activation rules);
* ``grid``: the Mappings grid — its rows, their saves, the actor-type switch and the rank order;
* ``list_mapping``: the list mapping of ERP List fields to CRM list items;
* ``defaults``: the default values of ERP fields for actors the CRM creates.

Callers use the names re-exported here (``from portal.services import mapping``).
"""

from __future__ import annotations

from portal.services.mapping.defaults import (
    can_have_default,
    default_candidates,
    default_display,
    default_list_texts,
    default_rows,
    parse_default,
    remove_default,
    save_default,
)
from portal.services.mapping.grid import (
    RowView,
    move_field,
    row_view,
    row_views,
    save_row,
    set_actor_type_active,
    unmap,
)
from portal.services.mapping.list_mapping import (
    ListRow,
    crm_items,
    erp_list,
    list_fields,
    list_rows,
    list_target,
    match_by_name,
    save_list_mapping,
)
from portal.services.mapping.rules import (
    NOT_WRITABLE_TYPES,
    Availability,
    CrmChoice,
    MappingError,
    MappingState,
    actor_config,
    crm_choices,
    crm_label,
    direction_to_crm,
    direction_to_erp,
    field_label,
    has_value_source,
    mapping_problems,
    needs_value,
    ordered_fields,
    other_to_crm_targets,
    switch_label,
    validate_row,
)
from portal.services.mapping.saving import (
    sync_running,
)

__all__ = [
    "Availability",
    "CrmChoice",
    "ListRow",
    "MappingError",
    "MappingState",
    "NOT_WRITABLE_TYPES",
    "RowView",
    "actor_config",
    "can_have_default",
    "crm_choices",
    "crm_items",
    "crm_label",
    "default_candidates",
    "default_display",
    "default_list_texts",
    "default_rows",
    "direction_to_crm",
    "direction_to_erp",
    "erp_list",
    "field_label",
    "has_value_source",
    "list_fields",
    "list_rows",
    "list_target",
    "mapping_problems",
    "match_by_name",
    "move_field",
    "needs_value",
    "ordered_fields",
    "other_to_crm_targets",
    "parse_default",
    "remove_default",
    "row_view",
    "row_views",
    "save_default",
    "save_list_mapping",
    "save_row",
    "set_actor_type_active",
    "switch_label",
    "sync_running",
    "unmap",
    "validate_row",
]
