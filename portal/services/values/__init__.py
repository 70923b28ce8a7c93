"""Field values between the CRM and the ERP: type compatibility, conversion, normalization, parsing and display.

Pure functions: no Flask, no database, no I/O.

Two representations meet here:

* **CRM values** -- Python values as stored on the SQLAlchemy models (``portal.models.crm``):
  ``text``/``longtext`` -> ``str`` (``''`` = blank), ``date`` -> ``datetime.date | None``,
  ``list`` -> ``int`` (a ``ListItem`` id) ``| None``, ``checkbox`` -> ``bool`` (never blank: ``False``),
  ``integer`` -> ``int | None`` (within ±``MAX_INTEGER``), ``decimal`` -> finite ``float | None`` (within
  ±``MAX_DECIMAL``); the limits are portal/services/crm_rules.py's, the rules every CRM value obeys.
* **ERP values** -- JSON-native per connector ``FieldType`` (connector-protocol.md, Types):
  Text/Password/Label -> ``str``, Integer -> ``int``, Double -> ``float``, Checkbox -> ``bool``,
  Date -> ``'YYYY-MM-DD'`` or ``'YYYY-MM-DDTHH:MM:SSZ'`` (UTC), List -> ``str`` item key; ``None`` = blank.

``normalize_erp`` gives the *canonical* ERP form of a value; the sync merge compares canonical forms only, so
every function here that returns an ERP value returns it normalized. Canonical forms:

* blank is always ``None`` (``''`` for Text/Password/Label/List, ``''`` or whitespace for the other types);
  text is otherwise kept exactly as given (nothing is stripped);
* Integer -> ``int`` (from ints, whole floats and strings such as ``'42'``, ``'-7'``, ``'12.0'``);
* Double -> finite ``float`` (``-0.0`` becomes ``0.0``);
* Checkbox -> ``bool`` (from ``true/false``, ``1/0``, ``yes/no``, ``on/off``, case-insensitive);
* Date -> ``'YYYY-MM-DD'`` when the time is midnight UTC (or there is no time), else
  ``'YYYY-MM-DDTHH:MM:SSZ'`` in UTC with sub-second digits dropped; a time without offset is taken as UTC;
* List -> ``str`` key (integer keys become strings).

Every conversion failure raises ``ConversionError`` (a ``ValueError``) whose message can be shown to an admin or
user as is, e.g. ``'abc' is not a whole number``. ``UnmappedListItem`` is the subclass for a list item that has no
counterpart in the list mapping; the engine records it as a per-field issue.

The modules, lower layers first (a module imports only the ones above it):

* errors.py — ``ConversionError``, ``UnmappedListItem`` and how values are quoted in their messages;
* helpers.py — ``same_value``, ``is_blank``, ``number_text``;
* compatibility.py — type names read as field types; which ERP type maps to which CRM type (``compatible``);
* normalize.py — ``normalize_erp``, one normalizer per ERP type;
* convert.py — ``erp_to_crm``, ``crm_to_erp``, ``invert_list_map``, ``to_crm_precision``;
* ui.py — ``parse_input`` (typed into a form) and ``display`` (shown).

Callers use this package's names (``from portal.services.values import ...``); a test that replaces a helper must
patch the module that looks it up (e.g. ``values.normalize``), not this package.
"""

from portal.services.values.compatibility import compatible
from portal.services.values.convert import crm_to_erp, erp_to_crm, invert_list_map, to_crm_precision
from portal.services.values.errors import ConversionError, UnmappedListItem
from portal.services.values.helpers import is_blank, number_text
from portal.services.values.helpers import same_value as same_value
from portal.services.values.normalize import normalize_erp
from portal.services.values.ui import display, parse_input

__all__ = [
    "ConversionError",
    "UnmappedListItem",
    "compatible",
    "crm_to_erp",
    "display",
    "erp_to_crm",
    "invert_list_map",
    "is_blank",
    "normalize_erp",
    "number_text",
    "parse_input",
    "to_crm_precision",
]
