"""Training snapshots: features at several as-of dates with a forward-looking default label."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from features.pipeline import KEY, build
from records.store import RecordStore

__all__ = ["add_months", "training_frame"]

_DEFAULTS_BETWEEN = """
SELECT DISTINCT subject_key FROM default_event
WHERE default_date > $start AND default_date <= $end
"""


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (or earlier), clamped to the month's end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise ValueError(f"cannot add {months} months to {day}")


def _defaulted(store: RecordStore, start: date, end: date) -> list[str]:
    rows = store.connection.execute(_DEFAULTS_BETWEEN, {"start": start, "end": end}).fetchall()
    return [str(r[0]) for r in rows]


def training_frame(
    store: RecordStore,
    as_of_dates: Sequence[date],
    horizon_months: int = 12,
    *,
    home_province: str = "33",
    retention_years: int = 5,
) -> pl.DataFrame:
    """Feature rows at each as-of date plus ``as_of`` and ``label`` (1 = a default event in
    (as_of, as_of + horizon]). Subjects already in default, i.e. with a default in the
    ``horizon_months`` up to and including the as-of date, are excluded: they are not
    applicants whose future is being predicted.
    """
    if horizon_months < 1:
        raise ValueError("horizon_months must be at least 1")
    frames = []
    for as_of in sorted(set(as_of_dates)):
        rows = build(store, as_of, home_province=home_province, retention_years=retention_years)
        in_default = _defaulted(store, add_months(as_of, -horizon_months), as_of)
        future = _defaulted(store, as_of, add_months(as_of, horizon_months))
        rows = rows.filter(~pl.col(KEY).is_in(in_default)).with_columns(
            pl.lit(as_of).alias("as_of"),
            pl.col(KEY).is_in(future).cast(pl.Int8).alias("label"),
        )
        frames.append(rows)
    if not frames:
        raise ValueError("as_of_dates is empty")
    return pl.concat(frames)
