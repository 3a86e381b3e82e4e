"""generate → files → ingest into a fresh store: reconciles, is idempotent, and with
--dirty every injected fault lands exactly where it should, with nothing valid lost."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import TEST_SECRET, TODAY

from records.generator import (
    FAULT_KINDS,
    ProvinceParams,
    generate_province,
    inject_faults,
    write_files,
)
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER, TABLES

PARAMS = ProvinceParams(entities=300, persons=700, seed=11)


def ingest_all(store: RecordStore, directory: Path, fmt: str) -> dict[str, object]:
    ingestor = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY, batch_rows=5_000)
    return {t: ingestor.ingest_file(t, directory / f"{t}.{fmt}") for t in TABLE_ORDER}


def stored_versions(store: RecordStore, table: str) -> set[tuple[object, ...]]:
    spec = TABLES[table]
    columns = ", ".join(f'"{c}"' for c in (*spec.stored_key, "reported_at", "record_hash"))
    return set(store.query(f"SELECT {columns} FROM {table}"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_round_trip_reconciles_and_is_idempotent(tmp_path: Path, fmt: str) -> None:
    frames = generate_province(PARAMS)
    write_files(frames, tmp_path / "files", fmt)  # type: ignore[arg-type]
    with RecordStore(tmp_path / "store.duckdb") as store:
        first = ingest_all(store, tmp_path / "files", fmt)
        for table, summary in first.items():
            assert summary.reconciles  # type: ignore[attr-defined]
            assert summary.read == frames[table].height  # type: ignore[attr-defined]
            assert summary.accepted == frames[table].height, (table, summary)  # type: ignore[attr-defined]
            assert store.count(table) == frames[table].height
        second = ingest_all(store, tmp_path / "files", fmt)
        for table, summary in second.items():
            assert summary.accepted == 0 and summary.rejected == 0  # type: ignore[attr-defined]
            assert summary.duplicate == frames[table].height  # type: ignore[attr-defined]
            assert store.count(table) == frames[table].height


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_dirty_files_every_fault_caught_nothing_valid_lost(tmp_path: Path, fmt: str) -> None:
    clean = generate_province(PARAMS)
    dirty, faults = inject_faults(clean, 0.03, seed=5)
    assert {f.kind for f in faults} == set(FAULT_KINDS)  # every kind of fault is exercised
    write_files(dirty, tmp_path / "dirty", fmt, faults)  # type: ignore[arg-type]
    write_files(clean, tmp_path / "clean", fmt)  # type: ignore[arg-type]
    with (
        RecordStore(tmp_path / "dirty.duckdb") as store,
        RecordStore(tmp_path / "clean.duckdb") as reference,
    ):
        summaries = ingest_all(store, tmp_path / "dirty", fmt)
        ingest_all(reference, tmp_path / "clean", fmt)
        quarantined = Counter(store.query("SELECT table_name, line, reason, field FROM quarantine"))
        expected_quarantine = Counter(
            (f.table, f.line, f.expected, f.field)
            for f in faults
            if f.expected not in ("duplicate", "accepted")
        )
        assert quarantined == expected_quarantine
        for table in TABLE_ORDER:
            summary = summaries[table]
            of_table = [f for f in faults if f.table == table]
            assert summary.reconciles  # type: ignore[attr-defined]
            assert summary.duplicate == sum(f.expected == "duplicate" for f in of_table)  # type: ignore[attr-defined]
            restated = sum(f.expected == "accepted" for f in of_table)
            assert summary.accepted == clean[table].height + restated  # type: ignore[attr-defined]
            # Nothing valid lost: every clean version is stored, plus the restatements.
            dirty_versions = stored_versions(store, table)
            clean_versions = stored_versions(reference, table)
            assert clean_versions <= dirty_versions
            assert len(dirty_versions - clean_versions) == restated
