"""The Dask engine's pieces that need no cluster: how chunks are cut into partitions, and
the round trip of decisions through a worker's answer."""

from __future__ import annotations

import polars as pl
import pytest

from features.pipeline import KEY
from models.model import Decision
from models.reasons import Reason
from service.batch_dask import DECISION_META, _decision_table, _decisions, _split


def _frames(*heights: int) -> list[tuple[int, pl.DataFrame]]:
    return [(n, pl.DataFrame({KEY: [f"k{i}" for i in range(h)]})) for n, h in enumerate(heights)]


@pytest.mark.parametrize(
    ("heights", "threads", "pieces"),
    [
        ((10_000,) * 5, 2, [5] * 5),  # at most 2,000 rows a partition
        ((600, 600, 600, 200), 2, [4, 4, 4, 2]),  # two per thread: 150 rows
        ((25,), 0, [2]),  # no thread known yet: as one
        ((1,), 8, [1]),
    ],
)
def test_chunks_are_cut_into_balanced_partitions(
    heights: tuple[int, ...], threads: int, pieces: list[int]
) -> None:
    assert _split(_frames(*heights), threads) == pieces


def test_decisions_survive_the_workers_answer_bit_for_bit() -> None:
    decisions = [
        Decision(
            probability_of_default=0.1 + 0.2,  # 0.30000000000000004
            score=612,
            grade="B",
            reasons=(
                Reason("R01", "late payments", 0.123456789012345678, "rep_late", 1e-300),
                Reason("R02", "inquiries, 90 days", -2.5e-17, "inq_90d", 3.0),
            ),
            thin_file=False,
            model_version="v1",
        ),
        Decision(5e-324, 900, "A", (), True, "v1"),
    ]
    table = _decision_table(["k0", "k1"], decisions)
    assert list(table.columns) == list(DECISION_META.columns)
    assert list(table.dtypes) == list(DECISION_META.dtypes)
    assert _decisions(table, ["k0", "k1"], "v1") == decisions
    with pytest.raises(RuntimeError, match="other subjects"):
        _decisions(table, ["k1", "k0"], "v1")
