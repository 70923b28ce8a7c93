"""The field types: a type name read as an ERP ``FieldType`` or a ``CrmFieldType``, and which ERP type may map to
which CRM type (``compatible``, with the reason an admin reads when it may not)."""

from __future__ import annotations

from portal.models.crm import CrmFieldType
from portal.models.erp import FieldType
from portal.services.values.errors import ConversionError, _quote

_CRM_TEXT_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})
_CRM_NUMBER_TYPES = frozenset({CrmFieldType.INTEGER, CrmFieldType.DECIMAL})
# What each ERP type may map to (Password: nothing). The CRM checkbox, integer and decimal fields take only these.
_ALLOWED = {
    FieldType.TEXT: _CRM_TEXT_TYPES,
    FieldType.LABEL: _CRM_TEXT_TYPES,
    FieldType.INTEGER: _CRM_TEXT_TYPES | _CRM_NUMBER_TYPES,
    FieldType.DOUBLE: _CRM_TEXT_TYPES | {CrmFieldType.DECIMAL},
    FieldType.CHECKBOX: frozenset({CrmFieldType.CHECKBOX}),
    FieldType.DATE: frozenset({CrmFieldType.DATE}),
    FieldType.LIST: frozenset({CrmFieldType.LIST}),
}

# The compatibility reasons name what the CRM field is and what the ERP field type can be mapped to instead:
# an admin reads them in the tooltip of a disabled choice, so each must say the rule that applies (issue #17).
_CRM_KIND = {
    CrmFieldType.TEXT: "a text field",
    CrmFieldType.LONGTEXT: "a long text field",
    CrmFieldType.DATE: "a date field",
    CrmFieldType.LIST: "a list",
    CrmFieldType.CHECKBOX: "a checkbox",
    CrmFieldType.INTEGER: "a whole number field",
    CrmFieldType.DECIMAL: "a decimal number field",
}
_CRM_TARGET = {
    FieldType.TEXT: "a CRM text or long text field",
    FieldType.LABEL: "a CRM text or long text field",
    FieldType.INTEGER: "a CRM whole number, decimal number, text or long text field",
    FieldType.DOUBLE: "a CRM decimal number, text or long text field",
    FieldType.CHECKBOX: "a CRM checkbox",
    FieldType.DATE: "a CRM date field",
    FieldType.LIST: "a CRM list field",
}


def _field_type(erp_type: object) -> FieldType:
    try:
        return FieldType(erp_type)
    except ValueError:
        raise ConversionError(f"Unknown ERP field type {_quote(erp_type)}") from None


def _crm_type(crm_field_type: object) -> CrmFieldType:
    try:
        return CrmFieldType(crm_field_type)
    except ValueError:
        raise ConversionError(f"Unknown CRM field type {_quote(crm_field_type)}") from None


def compatible(erp_type: str, crm_field_type: str, crm_label: str = "") -> tuple[bool, str]:
    """Whether an ERP field of ``erp_type`` may map to a CRM field of ``crm_field_type``: ``(ok, reason)``.

    ``reason`` is ``''`` when ok, else a short sentence for the tooltip of a disabled choice, naming the CRM field
    (``crm_label``, e.g. ``'Country is a list in the CRM; an ERP Text field can only be mapped to a CRM text or
    long text field'``). Rules: CRM text and long text take ERP Text, Label, Integer and Double (that a Label only
    syncs to the CRM is enforced by the mapping screen); CRM date takes only Date; CRM list takes only List;
    CRM checkbox takes only Checkbox (and a Checkbox maps to nothing else); CRM integer (a whole number) takes
    only Integer; CRM decimal takes Integer and Double; Password never maps. A Double is refused by a CRM
    integer field because the fraction would be lost, and the reason says so.
    """
    try:
        ftype = _field_type(erp_type)
    except ConversionError as error:
        return False, str(error)
    try:
        ctype = _crm_type(crm_field_type)
    except ConversionError as error:
        return False, str(error)
    if ftype == FieldType.PASSWORD:
        return False, "An ERP Password field is never synced, so it cannot be mapped"
    if ctype in _ALLOWED[ftype]:
        return True, ""
    kind = _CRM_KIND[ctype]
    crm_side = f"{crm_label} is {kind} in the CRM" if crm_label else f"The CRM field is {kind}"
    reason = f"{crm_side}; an ERP {ftype.value} field can only be mapped to {_CRM_TARGET[ftype]}"
    if ftype == FieldType.DOUBLE and ctype == CrmFieldType.INTEGER:
        reason += " (a whole number field would lose the fraction)"
    return False, reason


def _require_compatible(erp_type: str, crm_field_type: str) -> tuple[FieldType, CrmFieldType]:
    ftype = _field_type(erp_type)
    ctype = _crm_type(crm_field_type)
    ok, reason = compatible(ftype, ctype)
    if not ok:
        raise ConversionError(reason)
    return ftype, ctype
