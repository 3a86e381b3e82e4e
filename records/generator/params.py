"""Parameters, calendar arithmetic and array-to-column helpers shared by the generator.

Dates are handled as ``int64`` days since 1970-01-01 (polars ``Date`` is the same count),
months as ``int64`` month indices since 1970-01, timestamps as ``int64`` microseconds since
the epoch (naive UTC). Everything is vectorised with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "DAY_US",
    "NONE",
    "Calendar",
    "ProvinceParams",
]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
Index = npt.NDArray[np.integer[Any]]

DAY_US: Final = 86_400_000_000
HOUR_US: Final = 3_600_000_000
NONE: Final = 1 << 40  # "never" for month/day indices (far beyond any window)
_EPOCH: Final = date(1970, 1, 1)


@dataclass(frozen=True)
class ProvinceParams:
    """Size, seed and time window of a synthetic province."""

    entities: int
    persons: int
    seed: int
    end_date: date = date(2026, 6, 30)  # last reporting day of the history
    months: int = 36  # months of history
    home_province: str = "33"  # most subjects are registered here

    def __post_init__(self) -> None:
        if self.entities < 0 or self.persons < 0:
            raise ValueError("entities and persons must not be negative")
        if not 1 <= self.months <= 600:
            raise ValueError("months must be between 1 and 600")
        if self.end_date.year < 1990:
            raise ValueError("end_date must be after 1990")


def rng_for(seed: int, stage: int) -> np.random.Generator:
    """An independent generator per stage, derived from the province seed."""
    sequence = np.random.SeedSequence(entropy=seed & 0xFFFF_FFFF_FFFF_FFFF, spawn_key=(stage,))
    return np.random.Generator(np.random.PCG64(sequence))


def to_days(day: date) -> int:
    return (day - _EPOCH).days


def month_start(month_index: npt.ArrayLike) -> I64:
    """First day (days since epoch) of month indices (months since 1970-01)."""
    months = np.asarray(month_index, dtype=np.int64)
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def month_end(month_index: npt.ArrayLike) -> I64:
    return month_start(np.asarray(month_index, dtype=np.int64) + 1) - 1


def month_of(days: npt.ArrayLike) -> I64:
    """Month index of days since epoch."""
    values = np.asarray(days, dtype=np.int64)
    return values.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def add_months(days: npt.ArrayLike, months: npt.ArrayLike) -> I64:
    """Same day of month ``months`` later, clamped to the end of the target month."""
    values = np.asarray(days, dtype=np.int64)
    day_of_month = values - month_start(month_of(values))
    target = month_of(values) + np.asarray(months, dtype=np.int64)
    start = month_start(target)
    last = month_end(target)
    return np.minimum(start + day_of_month, last)


def ymd_strings(days: npt.ArrayLike) -> list[str]:
    """``YYYYMMDD`` strings of days since epoch."""
    text = np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))
    return [t.replace("-", "") for t in text.tolist()]


@dataclass(frozen=True)
class Calendar:
    """The reporting window: ``months`` whole months ending with the month of ``end_date``."""

    end_day: int  # days since epoch of end_date
    end_us: int  # last microsecond of end_date
    start_month: int  # month index of the first month of the window
    months: int
    start_day: int  # first day of the window

    @classmethod
    def of(cls, params: ProvinceParams) -> Calendar:
        end_day = to_days(params.end_date)
        end_month = int(month_of(end_day))
        start_month = end_month - params.months + 1
        return cls(
            end_day=end_day,
            end_us=(end_day + 1) * DAY_US - 1_000_000,
            start_month=start_month,
            months=params.months,
            start_day=int(month_start(start_month)),
        )

    @property
    def period_starts(self) -> I64:
        return month_start(np.arange(self.start_month, self.start_month + self.months))

    @property
    def period_ends(self) -> I64:
        return month_end(np.arange(self.start_month, self.start_month + self.months))


def sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def uniform_days(rng: np.random.Generator, low: I64, high: I64) -> I64:
    """A uniform day in ``[low, high]`` (inclusive) per element; requires ``low <= high``."""
    span = (high - low + 1).astype(np.float64)
    return low + np.floor(rng.random(low.shape[0]) * span).astype(np.int64)


def time_of_day(rng: np.random.Generator, n: int, first_hour: int, last_hour: int) -> I64:
    """Random microseconds within [first_hour, last_hour) of a day, to whole seconds."""
    seconds = rng.integers(first_hour * 3600, last_hour * 3600, size=n, dtype=np.int64)
    return seconds * 1_000_000


def choose(rng: np.random.Generator, weights: npt.ArrayLike, size: int) -> I64:
    """Indices drawn with the given (unnormalised) weights."""
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(w.shape[0], size=size, p=w / w.sum()).astype(np.int64)


def choose_rows(rng: np.random.Generator, probabilities: F64) -> I64:
    """One category per row of an (n, k) matrix of row-normalised probabilities."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(int(probabilities.shape[0]))
    out: I64 = (u[:, None] > cumulative[:, :-1]).sum(axis=1).astype(np.int64)
    return out


def round_amount(values: F64) -> F64:
    rounded: F64 = np.round(np.maximum(values, 0.0), 2).astype(np.float64)
    return rounded


# -- columns ------------------------------------------------------------------------------


def _masked(series: pl.Series, valid: Bool | None) -> pl.Series:
    if valid is None:
        return series
    return pl.select(pl.when(pl.Series(valid)).then(series).alias(series.name)).to_series()


def date_column(name: str, days: I64, valid: Bool | None = None) -> pl.Series:
    return _masked(pl.Series(name, days.astype(np.int32)).cast(pl.Date), valid)


def month_column(name: str, month_index: I64) -> pl.Series:
    return date_column(name, month_start(month_index))


def timestamp_column(name: str, micros: I64) -> pl.Series:
    return pl.Series(name, micros.astype(np.int64)).cast(pl.Datetime("us"))


def amount_column(name: str, values: F64, valid: Bool | None = None) -> pl.Series:
    return _masked(pl.Series(name, round_amount(values.astype(np.float64))), valid)


def share_column(name: str, units: I64, valid: Bool | None = None) -> pl.Series:
    return _masked(pl.Series(name, np.round(units / 10_000.0, 4)), valid)


def integer_column(name: str, values: Index) -> pl.Series:
    return pl.Series(name, values.astype(np.int32))


def enum_column(name: str, levels: tuple[str, ...] | list[str], codes: Index) -> pl.Series:
    return pl.Series(name, list(levels), dtype=pl.String).gather(codes).alias(name)


def text_column(
    name: str, values: pl.Series, index: Index | None = None, valid: Bool | None = None
) -> pl.Series:
    column = values if index is None else values.gather(index)
    return _masked(column.cast(pl.String).alias(name), valid)
