"""service.logs: a call-log line, built value by value, is exactly json.dumps of the record."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.logs import ServiceJsonFormatter

_PLAIN = st.none() | st.booleans() | st.integers() | st.floats() | st.text()  # NaN, inf too
_VALUES = _PLAIN | st.recursive(
    _PLAIN,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
_RECORD_KEYS = ["time", "level", "logger", "message"]


def _expected(formatter: ServiceJsonFormatter, created: float, fields: dict[Any, Any]) -> str:
    record = {"time": formatter._time(created), "level": "INFO", "logger": "x.calls"}
    record["message"] = "call"
    record.update(fields)
    return json.dumps(record, ensure_ascii=True, default=str)


@given(
    fields=st.dictionaries(st.text().filter(lambda key: key not in _RECORD_KEYS), _VALUES),
    created=st.floats(min_value=0, max_value=4e9),
)
def test_a_line_is_json_dumps_of_the_record(fields: dict[str, Any], created: float) -> None:
    formatter = ServiceJsonFormatter()
    line = formatter.line(created, "INFO", "x.calls", "call", fields)
    assert line == _expected(formatter, created, fields)


@given(
    fields=st.dictionaries(
        st.text() | st.sampled_from(_RECORD_KEYS) | st.integers() | st.booleans(),
        _VALUES,
        min_size=1,
    ).filter(lambda f: any(type(k) is not str or k in _RECORD_KEYS for k in f))
)
def test_a_field_replacing_a_record_key_or_keyed_by_a_non_string_is_as_json_writes_it(
    fields: dict[Any, Any],
) -> None:
    formatter = ServiceJsonFormatter()
    line = formatter.line(0.0, "INFO", "x.calls", "call", fields)
    assert line == _expected(formatter, 0.0, fields)


@given(value=st.sampled_from([1.5, float("nan"), float("inf"), -0.0, 10**20, True, None]))
def test_plain_values_are_written_as_json_writes_them(value: Any) -> None:
    formatter = ServiceJsonFormatter()
    line = formatter.line(0.0, "INFO", "x", "call", {"value": value})
    assert line.endswith(f', "value": {json.dumps(value)}}}')
