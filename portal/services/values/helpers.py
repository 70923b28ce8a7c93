"""Small value helpers every part uses: ``same_value`` (equal as field values), ``is_blank`` and ``number_text``
(a number without needless zeros)."""

from __future__ import annotations

from portal.services.values.errors import ConversionError


def same_value(a: object, b: object) -> bool:
    """Equal as field values: ``True`` is not ``1`` and ``False`` is not ``0`` (a checkbox is not a number), NaN
    equals NaN, and an object whose ``==`` fails is different."""
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # NaN
        return True
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic objects with a broken __eq__
        return False


def is_blank(value: object) -> bool:
    """``None``, a string of only whitespace, or an empty collection. ``0`` and ``False`` are not blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value) == 0
    return False


def number_text(value: int | float) -> str:
    """A number as text without needless zeros: ``3.0`` -> ``'3'``, ``1.50`` -> ``'1.5'``, ``1e20`` -> ``'1e+20'``.

    ``float(number_text(x)) == x`` for every finite float (the shortest round-tripping representation).
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    try:
        if isinstance(value, int):
            return str(value)
    except ValueError:  # more digits than Python converts to text
        raise ConversionError("The number is too large") from None
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)
