"""Property tests of the bulk field parsers: what is valid parses back to its value,
and what parses was valid."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from records.tables import FieldKind, FieldSpec
from records.validation import parse_field


def _run(kind: FieldKind, values: list[str], **extra: object) -> list[tuple[object, object]]:
    spec = FieldSpec("x", kind, "test", **extra)  # type: ignore[arg-type]
    value, bad = parse_field(spec, pl.String)
    # The value of a rejected row is never used (and may not even be a Python date,
    # e.g. year 0), so it is only kept where the row is valid.
    frame = pl.DataFrame({"x": values}, schema={"x": pl.String}).select(
        pl.when(bad.is_null()).then(value).alias("v"), bad.alias("e")
    )
    return list(zip(frame["v"].to_list(), frame["e"].to_list(), strict=True))


@settings(max_examples=200)
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    micros=st.booleans(),
    separator=st.sampled_from(["T", " "]),
)
def test_timestamps_round_trip_to_utc(
    moment: datetime, offset_minutes: int, micros: bool, separator: str
) -> None:
    moment = moment if micros else moment.replace(microsecond=0)
    tz = timezone(timedelta(minutes=offset_minutes))
    text = moment.replace(tzinfo=tz).isoformat(sep=separator)
    [(value, error)] = _run(FieldKind.TIMESTAMP, [text])
    assert error is None, text
    expected = moment.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    assert value == expected


@given(st.text(max_size=30))
def test_garbage_timestamps_are_rejected_or_really_timestamps(text: str) -> None:
    [(value, error)] = _run(FieldKind.TIMESTAMP, [text])
    if error is None:
        assert isinstance(value, datetime)
        prefix = text[:19].replace(" ", "T")
        assert datetime.fromisoformat(prefix)  # the accepted text was a real date-time


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(9999, 12, 31)))
def test_dates_round_trip(day: date) -> None:
    assert _run(FieldKind.DATE, [day.isoformat()]) == [(day, None)]


@given(st.text(alphabet="0123456789-", max_size=12))
def test_date_shaped_garbage_only_passes_when_it_is_a_date(text: str) -> None:
    [(value, error)] = _run(FieldKind.DATE, [text])
    if error is None:
        assert value == date.fromisoformat(text) and len(text) == 10


@given(st.decimals(min_value=0, max_value=Decimal("9999999999999999.99"), places=2))
def test_amounts_round_trip_exactly(amount: Decimal) -> None:
    text = f"{amount:.2f}"
    assert _run(FieldKind.AMOUNT, [text]) == [(Decimal(text), None)]


@given(st.text(alphabet="0123456789.-e+ ", max_size=12))
def test_amount_garbage_never_passes_silently(text: str) -> None:
    [(value, error)] = _run(FieldKind.AMOUNT, [text])
    if error is None:
        assert Decimal(text) == value and Decimal(text) >= 0


@given(st.integers(min_value=-10, max_value=2_000_000))
def test_integers_respect_their_range(number: int) -> None:
    [(value, error)] = _run(FieldKind.INTEGER, [str(number)], minimum=0, maximum=1_000_000)
    assert (error is None) == (0 <= number <= 1_000_000)
    if error is None:
        assert value == number
