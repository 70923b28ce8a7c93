"""``portal.jsoncodec.dumps`` writes text that reads back to the values ``json.dumps`` writes (the JSON columns are
read with ``json.loads``)."""

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
    return a == b


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
