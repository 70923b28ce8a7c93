"""The lines of what Sync now did, as the ERP tab shows them (beside the portal/services/erp_tab package):
whatever the engine reports — ``ChangeLine``/``ConflictLine`` or anything similar — becomes plain text."""

from __future__ import annotations

from datetime import date

from portal.services.values import number_text


def plain_text(value: object) -> str:
    """A value as the Sync now result shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def triples(items) -> list[tuple[str, str, str]]:
    """(label, old, new) texts of the engine's change lines."""
    result = []
    for item in items or []:
        if isinstance(item, str):
            result.append((item, "", ""))
            continue
        try:
            label, old, new = item
        except (TypeError, ValueError):
            result.append((str(item), "", ""))
            continue
        result.append((str(label), plain_text(old), plain_text(new)))
    return result


def conflict_text(item: object) -> str:
    """A readable line for one conflict reported by the engine (``ConflictLine`` or anything similar)."""
    if isinstance(item, str):
        return item
    if isinstance(item, tuple | list):
        return " · ".join(plain_text(part) for part in item)
    label = getattr(item, "label", None) or getattr(item, "key", None) or ""
    crm = getattr(item, "crm_value", getattr(item, "crm", None))
    erp = getattr(item, "erp_value", getattr(item, "erp", None))
    winner, rule = getattr(item, "winner", None), getattr(item, "rule", None)
    details = []
    if crm is not None or erp is not None:
        details.append(f"CRM had “{plain_text(crm)}”, ERP had “{plain_text(erp)}”")
    if rule:
        details.append(str(rule))
    elif winner:
        details.append(f"{winner} wins")
    if not label and not details:
        return str(item)
    return f"{label}: " + "; ".join(details) if details else str(label)


__all__ = ["conflict_text", "plain_text", "triples"]
