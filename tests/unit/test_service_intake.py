"""A reported batch becomes a frame of its table's columns, or fails naming what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from records.tables import table_spec
from service.intake import RecordIntake, ReportedBatch
from service.problems import InvalidRequest, ResourceLimit

INTAKE = RecordIntake(lambda: pytest.fail("no ingestion in these tests"), max_batch_rows=3)
COLUMNS = table_spec("public_record").field_names


@given(
    st.lists(
        st.dictionaries(st.sampled_from(COLUMNS), st.text(max_size=12), max_size=len(COLUMNS)),
        max_size=3,
    )
)
def test_a_batch_is_its_tables_columns_as_text_empty_meaning_absent(
    rows: list[dict[str, str]],
) -> None:
    frame = INTAKE.frame(ReportedBatch("b1", "public_record", rows), at="batches[0]")
    assert frame.columns == list(COLUMNS) and frame.height == len(rows)
    for row, stored in zip(rows, frame.to_dicts(), strict=True):
        assert stored == {name: row.get(name) or None for name in COLUMNS}


@pytest.mark.parametrize(
    ("batch", "field", "rule"),
    [
        (ReportedBatch("b", None, []), "batches[2].table", "required"),
        (ReportedBatch("b", "ledger", []), "batches[2].table", "unknown_value"),
        (ReportedBatch("b" * 129, "public_record", []), "batches[2].batch_id", "bad_format"),
        (ReportedBatch("b\n", "public_record", []), "batches[2].batch_id", "bad_format"),
        (
            ReportedBatch("b", "public_record", [{}, {"colour": "red"}]),
            "batches[2].rows[1].fields",
            "unknown_column",
        ),
    ],
)
def test_a_contract_error_fails_the_batch_naming_the_field(
    batch: ReportedBatch, field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        INTAKE.frame(batch, at="batches[2]")
    assert (caught.value.field, caught.value.rule) == (field, rule)


def test_an_unknown_column_is_named_only_when_it_looks_like_a_name() -> None:
    resident_id = "330106198503150014"
    for column, shown in (("colour", "'colour'"), (resident_id, "a field")):
        with pytest.raises(InvalidRequest) as caught:
            INTAKE.frame(ReportedBatch("b", "public_record", [{column: "x"}]), at="batches[0]")
        assert shown in caught.value.message and resident_id not in caught.value.message


def test_a_batch_over_the_row_limit_is_refused() -> None:
    with pytest.raises(ResourceLimit, match="at most 3"):
        INTAKE.frame(ReportedBatch("b", "public_record", [{}] * 4), at="batches[0]")
