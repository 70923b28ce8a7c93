"""``portal.jsoncodec.dumps`` writes text that reads back to the values ``json.dumps`` writes, and
``portal.jsoncodec.loads`` (what the JSON columns are read with) reads what ``json.loads`` reads."""

from __future__ import annotations

import json
import math
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from portal import jsoncodec

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_keys = st.text() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | st.booleans() | st.none()
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(_keys, inner, max_size=5), max_leaves=30)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 are equal in Python but not the same JSON)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@settings(max_examples=500)
@given(json_values)
def test_dumps_reads_back_to_what_json_dumps_writes(value):
    assert _same(json.loads(jsoncodec.dumps(value)), json.loads(json.dumps(value)))


def test_big_integers_and_keys_that_are_not_text():
    value = {"big": 2 ** 70, "neg": -(2 ** 64), 1: "one", None: "none", False: "no", 2.5: "half"}
    assert _same(json.loads(jsoncodec.dumps(value)), json.loads(json.dumps(value)))


def test_characters_are_written_as_utf8():
    assert jsoncodec.dumps({"a": "ü\u2028"}) == '{"a":"ü\u2028"}'


def test_what_json_has_no_text_for():
    assert json.loads(jsoncodec.dumps([math.nan, math.inf, -math.inf])) == [None, None, None]
    assert json.loads(jsoncodec.dumps({"at": datetime(2026, 11, 25, 12, 0)})) == {"at": "2026-11-25T12:00:00"}


@settings(max_examples=500)
@given(json_values)
def test_loads_reads_what_json_loads_reads(value):
    for text in (jsoncodec.dumps(value), json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert _same(jsoncodec.loads(text), json.loads(text))
        assert _same(jsoncodec.loads(text.encode()), json.loads(text))


def test_loads_where_orjson_would_read_differently():
    texts = [
        "123456789012345678901234567890", "18446744073709551616", "-9223372036854775809", "9223372036854775808",
        '{"a": [1, -99999999999999999999]}', '"a 20-digit run in text: 12345678901234567890"',
        "NaN", "[Infinity, -Infinity]", "1e400", '"\\ud800"', '{"a": 1, "a": 2}', "[1.0000000000000001, -0.0]",
    ]
    for text in texts:
        assert _same(jsoncodec.loads(text), json.loads(text)), text
    assert jsoncodec.loads("-9223372036854775809") == -9223372036854775809  # orjson alone gives a float


def test_the_engine_reads_json_columns_with_it(app):
    from portal.extensions import db

    with app.app_context():
        assert db.engine.dialect._json_deserializer is jsoncodec.loads
