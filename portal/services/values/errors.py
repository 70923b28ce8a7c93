"""The errors of a failed conversion (``ConversionError``, ``UnmappedListItem``) and ``_quote``, how a value
appears in their messages."""

from __future__ import annotations


class ConversionError(ValueError):
    """A value that cannot be converted; ``str(error)`` is a readable sentence for an admin or user."""


class UnmappedListItem(ConversionError):
    """A list item without a counterpart in the list mapping.

    ``key`` is the ERP item key (``side == 'erp'``, converting to the CRM) or the CRM ``ListItem`` id
    (``side == 'crm'``, converting to the ERP).
    """

    def __init__(self, key: str | int, side: str) -> None:
        self.key = key
        self.side = side
        if side == "erp":
            message = f"ERP list item {_quote(key)} is not mapped to a CRM list item"
        else:
            message = f"CRM list item {_quote(key)} is not mapped to an ERP list item"
        super().__init__(message)


def _quote(value: object, limit: int = 40) -> str:
    """A value as it appears in a message: strings in single quotes, shortened to ``limit`` characters."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 1] + "\u2026"
        return f"'{text}'"
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return "the number"
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
