"""Ingestion through a real DuckDB file: validation, quarantine, versions, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import TODAY, entity_row, make_resident_id, make_uscc, person_row, write_csv

from records.ingest import IngestError, Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore


def quarantine(store: RecordStore) -> list[tuple[object, ...]]:
    return store.query("SELECT line, field, reason FROM quarantine ORDER BY line")


def test_valid_file_is_stored_and_second_ingest_adds_nothing(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = write_csv(tmp_path / "le.csv", [entity_row(i) for i in range(1, 51)])
    first = ingestor.ingest_file("legal_entity", path)
    assert (first.read, first.accepted, first.duplicate, first.rejected) == (50, 50, 0, 0)
    second = ingestor.ingest_file("legal_entity", path)
    assert (second.read, second.accepted, second.duplicate, second.rejected) == (50, 0, 50, 0)
    assert store.count("legal_entity") == 50
    assert store.query("SELECT status, count(*) FROM ingestion GROUP BY ALL") == [("committed", 2)]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        (
            {
                "uscc": make_uscc(1)[:-1] + "0"
                if make_uscc(1)[-1] != "0"
                else make_uscc(1)[:-1] + "1"
            },
            "uscc",
            "invalid_identifier",
        ),
        ({"uscc": make_uscc(1).lower()}, "uscc", "invalid_identifier"),
        ({"name": ""}, "name", "missing_field"),
        ({"name": "x" * 201}, "name", "too_long"),
        ({"name": "bad\x00name"}, "name", "invalid_text"),
        ({"entity_type": "llc"}, "entity_type", "invalid_enum"),
        ({"region_code": "990106"}, "region_code", "invalid_region"),
        ({"registered_capital": "-5"}, "registered_capital", "invalid_amount"),
        ({"registered_capital": "1.005"}, "registered_capital", "invalid_amount"),
        ({"registered_capital": "1e6"}, "registered_capital", "invalid_amount"),
        ({"established_on": "2023-02-29"}, "established_on", "invalid_date"),
        ({"established_on": "2023-2-1"}, "established_on", "invalid_date"),
        ({"established_on": "1899-12-31"}, "established_on", "date_out_of_range"),
        ({"established_on": "2024-01-03"}, "established_on", "date_after_report"),
        ({"status_date": "2010-01-01"}, "status_date", "inconsistent_fields"),
        ({"source": "amr-33"}, "source", "invalid_code"),
        ({"reported_at": "2024-01-02 25:00:00"}, "reported_at", "invalid_timestamp"),
        ({"reported_at": "yesterday"}, "reported_at", "invalid_timestamp"),
    ],
)
def test_each_rule_sends_the_row_to_quarantine_with_its_reason(
    tmp_path: Path,
    store: RecordStore,
    ingestor: Ingestor,
    changes: dict[str, str],
    field: str,
    reason: str,
) -> None:
    rows = [entity_row(1, **changes), entity_row(2)]
    summary = ingestor.ingest_file("legal_entity", write_csv(tmp_path / "le.csv", rows))
    assert (summary.read, summary.accepted, summary.rejected) == (2, 1, 1)
    assert summary.reasons == {reason: 1}
    assert quarantine(store) == [(2, field, reason)]
    message = store.query("SELECT message FROM quarantine")[0][0]
    assert field in message


def test_timestamps_with_offsets_are_stored_in_utc(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    rows = [
        entity_row(1, reported_at="2024-01-03T09:30:00+08:00"),
        entity_row(2, reported_at="2024-01-02T10:00:00.25Z"),
    ]
    ingestor.ingest_file("legal_entity", write_csv(tmp_path / "le.csv", rows))
    stamps = [str(r[0]) for r in store.query("SELECT reported_at FROM legal_entity ORDER BY uscc")]
    assert stamps == ["2024-01-03 01:30:00", "2024-01-02 10:00:00.250000"]


def test_versions_duplicates_and_conflicts(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    ingestor.ingest_file("legal_entity", write_csv(tmp_path / "a.csv", [entity_row(1)]))
    later = entity_row(
        1, status="revoked", status_date="2024-02-01", reported_at="2024-02-03T00:00:00"
    )
    same_again_later = entity_row(1, reported_at="2024-01-20T00:00:00")
    conflict = entity_row(1, name="Other Name")  # same key and reported_at, new content
    summary = ingestor.ingest_file(
        "legal_entity", write_csv(tmp_path / "b.csv", [later, same_again_later, conflict])
    )
    assert (summary.accepted, summary.duplicate, summary.rejected) == (1, 1, 1)
    assert summary.reasons == {"conflicting_version": 1}
    versions = store.query("SELECT status, reported_at FROM legal_entity ORDER BY reported_at")
    assert [v[0] for v in versions] == ["active", "revoked"]  # history kept, nothing overwritten
    assert quarantine(store) == [(4, None, "conflicting_version")]


def test_conflicts_within_one_file(tmp_path: Path, store: RecordStore, ingestor: Ingestor) -> None:
    rows = [entity_row(1), entity_row(1), entity_row(1, name="Changed")]
    summary = ingestor.ingest_file("legal_entity", write_csv(tmp_path / "le.csv", rows))
    assert (summary.accepted, summary.duplicate, summary.rejected) == (1, 1, 1)
    assert store.query("SELECT name FROM legal_entity") == [("Test Company 1",)]


def test_references_must_be_known(tmp_path: Path, store: RecordStore, ingestor: Ingestor) -> None:
    ingestor.ingest_file("legal_entity", write_csv(tmp_path / "le.csv", [entity_row(1)]))
    ingestor.ingest_file("natural_person", write_csv(tmp_path / "np.csv", [person_row(1)]))
    base = {
        "uscc": make_uscc(1),
        "resident_id": make_resident_id(1),
        "role": "shareholder",
        "share": "0.6",
        "valid_from": "2020-01-01",
        "valid_to": None,
        "source": "AMR-33",
        "reported_at": "2024-01-05T00:00:00",
    }
    rows = [
        base,
        base | {"uscc": make_uscc(2)},
        base | {"resident_id": make_resident_id(2)},
        base | {"role": "executive"},  # share given for a non-shareholder
        base | {"share": "1.5"},
        base | {"role": "legal_representative", "share": None, "valid_to": "2019-01-01"},
    ]
    summary = ingestor.ingest_file("relation", write_csv(tmp_path / "rel.csv", rows))
    assert summary.accepted == 1
    assert quarantine(store) == [
        (3, "uscc", "unknown_subject"),
        (4, "resident_id", "unknown_subject"),
        (5, "share", "inconsistent_fields"),
        (6, "share", "invalid_share"),
        (7, "valid_to", "inconsistent_fields"),
    ]


def test_repayment_needs_a_known_account(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    ingestor.ingest_file("natural_person", write_csv(tmp_path / "np.csv", [person_row(1)]))
    account = {
        "account_id": "A1",
        "subject_type": "person",
        "subject_id": make_resident_id(1),
        "product": "credit_card",
        "opened_on": "2022-01-10",
        "maturity_on": None,
        "closed_on": None,
        "credit_limit": "50000.00",
        "guarantee_type": "unsecured",
        "source": "P0001",
        "reported_at": "2022-01-11T00:00:00",
    }
    assert (
        ingestor.ingest_file("credit_account", write_csv(tmp_path / "acc.csv", [account])).accepted
        == 1
    )
    month = {
        "account_id": "A1",
        "period": "2023-05",
        "balance": "1200.00",
        "amount_due": "300.00",
        "amount_paid": "0.00",
        "overdue_days": "31",
        "overdue_amount": "300.00",
        "status": "overdue",
        "source": "P0001",
        "reported_at": "2023-06-10T00:00:00",
    }
    rows = [
        month,
        month | {"account_id": "A2"},
        month | {"period": "2023-13"},
        month | {"overdue_days": "-1"},
        month | {"period": "2023-07"},  # after it was reported
    ]
    summary = ingestor.ingest_file("repayment", write_csv(tmp_path / "rep.csv", rows))
    assert summary.accepted == 1
    assert quarantine(store) == [
        (3, "account_id", "unknown_account"),
        (4, "period", "invalid_date"),
        (5, "overdue_days", "invalid_integer"),
        (6, "period", "date_after_report"),
    ]
    assert store.query("SELECT period FROM repayment")[0][0].isoformat() == "2023-05-01"


def test_persons_are_stored_as_pseudonyms_and_never_in_clear(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor, pseudonymiser: Pseudonymiser
) -> None:
    good, bad = make_resident_id(1), make_resident_id(2)[:-1] + "5"
    if bad == make_resident_id(2):
        bad = make_resident_id(2)[:-1] + "6"
    ingestor.ingest_file(
        "natural_person",
        write_csv(tmp_path / "np.csv", [person_row(1), person_row(2, resident_id=bad)]),
    )
    stored = store.query(
        "SELECT person_key, resident_id, birth_date, gender, id_region FROM natural_person"
    )
    assert stored[0][0] == pseudonymiser.person_key(good)
    assert stored[0][1] is None
    assert str(stored[0][2]) == "1985-03-15" and stored[0][4] == "330106"
    dump = json.dumps(store.query("SELECT * FROM quarantine"), default=str)
    dump += json.dumps(store.query("SELECT * FROM natural_person"), default=str)
    assert good not in dump and bad not in dump
    assert bad[:6] + "********" + bad[-4:] in dump  # masked, so the reporter can find the row


def test_raw_number_is_kept_only_when_configured(
    tmp_path: Path, store: RecordStore, pseudonymiser: Pseudonymiser
) -> None:
    keeping = Ingestor(store, pseudonymiser, keep_resident_id=True, today=TODAY)
    keeping.ingest_file("natural_person", write_csv(tmp_path / "np.csv", [person_row(1)]))
    assert store.query("SELECT resident_id FROM natural_person") == [(make_resident_id(1),)]


def test_wrong_header_fails_the_file_and_changes_nothing(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    rows = [{k if k != "name" else "company_name": v for k, v in entity_row(1).items()}]
    with pytest.raises(IngestError, match=r"missing columns \['name'\].*unexpected columns"):
        ingestor.ingest_file("legal_entity", write_csv(tmp_path / "le.csv", rows))
    assert store.count("legal_entity") == 0
    assert store.query("SELECT status, error LIKE '%missing columns%' FROM ingestion") == [
        ("failed", True)
    ]


def test_a_failure_midway_leaves_the_store_as_before(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = write_csv(tmp_path / "le.csv", [entity_row(i) for i in range(1, 3001)])
    with path.open("ab") as handle:  # far past the first 64 KiB block, a quote never closed
        handle.write(b'"an open quote,\n' + b"more,lines\n" * 20_000)
    with pytest.raises(IngestError, match=r"quoted field is never closed.*nothing was stored"):
        ingestor.ingest_file("legal_entity", path)
    assert store.count("legal_entity") == 0
    assert store.count("quarantine") == 0


def test_malformed_rows_and_blank_lines_keep_true_line_numbers(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = write_csv(tmp_path / "le.csv", [entity_row(1), entity_row(2)])
    text = path.read_text().splitlines()
    bad = entity_row(3, established_on="2030-01-01")
    lines = [
        text[0],
        text[1],
        "",
        "only,three,fields",
        text[2],
        ",".join(v or "" for v in bad.values()),
    ]
    path.write_text("\n".join(lines) + "\n")
    summary = ingestor.ingest_file("legal_entity", path)
    assert (summary.read, summary.accepted, summary.rejected) == (4, 2, 2)
    assert quarantine(store) == [
        (4, None, "malformed_row"),
        (6, "established_on", "date_after_report"),
    ]


def test_parquet_with_typed_columns(tmp_path: Path, store: RecordStore, ingestor: Ingestor) -> None:
    frame = pl.DataFrame([entity_row(1), entity_row(2)]).with_columns(
        pl.col("established_on").str.to_date(),
        pl.col("registered_capital").cast(pl.Float64),
        pl.col("reported_at").str.to_datetime(),
    )
    frame = frame.with_columns(
        pl.when(pl.col("uscc") == make_uscc(2))
        .then(pl.lit(-1.0))
        .otherwise(pl.col("registered_capital"))
        .alias("registered_capital")
    )
    path = tmp_path / "le.parquet"
    frame.write_parquet(path)
    summary = ingestor.ingest_file("legal_entity", path)
    assert (summary.accepted, summary.rejected) == (1, 1)
    assert quarantine(store) == [(3, "registered_capital", "invalid_amount")]


def test_normalisation_is_explicit_and_recorded(
    tmp_path: Path, store: RecordStore, pseudonymiser: Pseudonymiser
) -> None:
    fullwidth = make_uscc(1).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
    rows = [entity_row(1, uscc=fullwidth), entity_row(2, uscc=" " + make_uscc(2).lower())]
    path = write_csv(tmp_path / "le.csv", rows)
    strict = Ingestor(store, pseudonymiser, today=TODAY)
    assert strict.ingest_file("legal_entity", path).reasons == {"invalid_identifier": 2}
    lenient = Ingestor(store, pseudonymiser, today=TODAY, normalise=True)
    assert lenient.ingest_file("legal_entity", path).accepted == 2
    recorded = store.query("SELECT normalisation FROM ingestion WHERE normalisation IS NOT NULL")
    assert json.loads(recorded[0][0])["changed_values"] == 2


def test_a_tracked_ingestion_names_the_subjects_it_touched_and_each_rejected_row(
    store: RecordStore, ingestor: Ingestor, pseudonymiser: Pseudonymiser
) -> None:
    def frame(rows: list[dict[str, str | None]]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})

    people = ingestor.ingest_frame(
        "natural_person", frame([person_row(1), person_row(2)]), label="p", track_subjects=True
    )
    person_1, person_2 = (pseudonymiser.person_key(make_resident_id(n)) for n in (1, 2))
    assert people.touched_subjects == sorted([person_1, person_2])
    assert (
        ingestor.ingest_frame("legal_entity", frame([entity_row(1)]), label="e").touched_subjects
        == []
    )
    relation = {
        "uscc": make_uscc(1),
        "resident_id": make_resident_id(2),
        "role": "legal_representative",
        "share": None,
        "valid_from": "2020-01-01",
        "valid_to": None,
        "source": "AMR-33",
        "reported_at": "2024-01-03T00:00:00",
    }
    tied = ingestor.ingest_frame("relation", frame([relation]), label="r", track_subjects=True)
    assert tied.touched_subjects == sorted([make_uscc(1), person_2])
    account = {
        "account_id": "A1",
        "subject_type": "person",
        "subject_id": make_resident_id(1),
        "product": "credit_card",
        "opened_on": "2022-01-10",
        "maturity_on": None,
        "closed_on": None,
        "credit_limit": "50000.00",
        "guarantee_type": "unsecured",
        "source": "P0001",
        "reported_at": "2022-01-11T00:00:00",
    }
    ingestor.ingest_frame("credit_account", frame([account]), label="a")
    month = {
        "account_id": "A1",
        "period": "2023-05",
        "balance": "1200.00",
        "amount_due": "300.00",
        "amount_paid": "0.00",
        "overdue_days": "31",
        "overdue_amount": "300.00",
        "status": "overdue",
        "source": "P0001",
        "reported_at": "2023-06-10T00:00:00",
    }
    rows = [month | {"overdue_days": "-1"}, month, month | {"account_id": "A9"}]
    paid = ingestor.ingest_frame("repayment", frame(rows), label="m", track_subjects=True)
    assert paid.touched_subjects == [person_1], "a repayment touches its account's holder"
    assert [(r.row, r.field, r.reason) for r in paid.rejections] == [
        (0, "overdue_days", "invalid_integer"),
        (2, "account_id", "unknown_account"),
    ]
    assert all(r.message for r in paid.rejections)
    again = ingestor.ingest_frame("repayment", frame([month]), label="m2", track_subjects=True)
    assert (again.duplicate, again.touched_subjects) == (1, []), "a duplicate touches no one"
    assert "rejections" not in paid.to_dict() and "touched_subjects" not in paid.to_dict()
