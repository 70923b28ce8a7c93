"""``portal.jsoncodec`` gives what the standard library's ``json`` gives: the same values read from any text, and
text that reads back to the same values."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal import jsoncodec

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30)


def _reject(name: str):
    raise ValueError(name)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 are equal in Python but not the same JSON)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@settings(max_examples=300)
@given(json_values, st.booleans())
def test_loads_reads_what_the_standard_library_reads(value, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert _same(jsoncodec.loads(raw), json.loads(raw))


@settings(max_examples=300)
@given(json_values)
def test_dumps_reads_back_to_the_same_values(value):
    assert _same(json.loads(jsoncodec.dumps(value)), json.loads(json.dumps(value)))


@pytest.mark.parametrize("raw", [
    b"18446744073709551616", b"-9223372036854775809", b'{"n": 123456789012345678901234567890}',
    b"[1e400]", b'"\\ud800"', b'\xef\xbb\xbf{"a": 1}', b'"a\\u0000b"', b"1.7976931348623157e308",
    b'{"a": 1, "a": 2}', b"-0", b"-0.0", b'"' + b"1" * 40 + b'"', '{"å": "ü"}'.encode("utf-16"),
])
def test_loads_agrees_where_orjson_alone_would_not(raw):
    assert _same(jsoncodec.loads(raw), json.loads(raw))


@pytest.mark.parametrize("raw", [b"[NaN]", b'{"a": Infinity}', b"-Infinity"])
def test_loads_hands_constants_to_parse_constant(raw):
    with pytest.raises(ValueError):
        jsoncodec.loads(raw, parse_constant=_reject)
    assert not _same(jsoncodec.loads(raw), None)  # accepted without it, as json.loads does


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b"\xff", b"{'a': 1}", b"nul"])
def test_loads_refuses_what_the_standard_library_refuses(raw):
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        jsoncodec.loads(raw)


def test_dumps_writes_big_integers_and_non_text_keys_like_the_standard_library():
    value = {"big": 2 ** 70, 1: "one", None: "none", False: "no", 2.5: "half"}
    assert json.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))
    assert jsoncodec.dumps({"a": "ü"}) == '{"a":"ü"}'  # UTF-8 characters, not escapes


def test_dumps_writes_what_json_cannot_hold_as_json():
    assert json.loads(jsoncodec.dumps([math.nan, math.inf])) == [None, None]  # not the NaN token
    assert json.loads(jsoncodec.dumps({"at": datetime(2026, 11, 25, 12, 0)})) == {"at": "2026-11-25T12:00:00"}
