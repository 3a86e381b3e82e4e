"""subject_decisions: what each decision keeps of the matrix it was decided from."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from models.decisions import subject_decisions
from models.model import Decision


def _decisions(n: int) -> list[Decision]:
    return [Decision(0.01 * (i + 1), 600 + i, "B", (), False, "m1") for i in range(n)]


@pytest.mark.parametrize("share_matrix", [True, False])
def test_each_decision_gets_its_row_read_only(share_matrix: bool) -> None:
    matrix = np.arange(12, dtype=np.float64).reshape(4, 3)
    keys = ["a", "b", "c", "d"]
    found = subject_decisions(
        date(2025, 12, 31),
        ["entity"] * 4,
        keys,
        matrix,
        _decisions(4),
        {},
        share_matrix=share_matrix,
    )
    assert [item.subject_key for item in found] == keys
    for i, item in enumerate(found):
        np.testing.assert_array_equal(item.features, matrix[i])
        assert not item.features.flags.writeable
        with pytest.raises(ValueError):
            item.features[0] = -1.0


def test_own_rows_do_not_keep_the_matrix_alive() -> None:
    # A refresh's decisions outlive its matrix piecemeal; a view would pin all of it.
    matrix = np.ones((1000, 100))
    found = subject_decisions(
        date(2025, 12, 31), ["entity"], ["a"], matrix[:1], _decisions(1), {}, share_matrix=False
    )
    assert found[0].features.base is None and found[0].features.nbytes == 800
    shared = subject_decisions(date(2025, 12, 31), ["entity"], ["a"], matrix[:1], _decisions(1), {})
    assert shared[0].features.base is not None
