"""JSON on the portal's hot paths, through orjson where it gives what the standard library would.

orjson reads and writes JSON several times faster than the standard library. It is used where the two agree:

- ``loads`` (connector answers): orjson refuses NaN/Infinity, numbers out of a double's range, lone surrogates
  and a byte-order mark, which the standard library accepts, so those answers go to the standard library (the
  caller's ``parse_constant`` refuses the constants); and orjson would turn an integer beyond 64 bits into a
  float, so an answer holding 19 digits in a row is read by the standard library too (a long digit string in a
  text value only takes the slower path, with the same result).
- ``dumps`` (the database's JSON columns: link bases, run counts, cursors): an integer beyond 64 bits, or
  anything else orjson cannot write, goes to the standard library. orjson writes UTF-8 characters rather than
  ``\\uXXXX`` escapes (the same values read back), NaN and infinities as null (the standard library's NaN token
  is not JSON, and PostgreSQL refuses it) and datetimes as ISO-8601 text (where the standard library raises).
  Reading those columns stays with the standard library: their documents are small, where orjson gains little.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19  # more digits than any integer orjson keeps exact


def loads(raw: bytes, parse_constant: Callable[[str], object] | None = None) -> object:
    """``json.loads(raw, parse_constant=…)``, read by orjson where that gives the same value."""
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard library decides: it accepts some of this, and words the errors
    if parse_constant is None:
        return json.loads(raw)
    return json.loads(raw, parse_constant=parse_constant)


def dumps(value: object) -> str:
    """``json.dumps(value)`` for the database's JSON columns (see the module's notes)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(value)
