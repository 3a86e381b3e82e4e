"""Shared fixtures: a real DuckDB file per test, valid identifiers on demand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from records.identifiers import (
    organisation_check_character,
    resident_id_check_character,
    uscc_check_character,
)
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore

TEST_SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
TODAY = date(2026, 11, 26)


def make_uscc(n: int, region: str = "330106") -> str:
    body8 = f"{n:08d}"
    first17 = "91" + region + body8 + organisation_check_character(body8)
    return first17 + uscc_check_character(first17)


def make_resident_id(n: int, region: str = "330106", birth: str = "19850315") -> str:
    first17 = region + birth + f"{n % 1000:03d}"
    return first17 + resident_id_check_character(first17)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore(tmp_path / "store.duckdb") as opened:
        yield opened


@pytest.fixture
def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(TEST_SECRET)


@pytest.fixture
def ingestor(store: RecordStore, pseudonymiser: Pseudonymiser) -> Ingestor:
    return Ingestor(store, pseudonymiser, today=TODAY, csv_block_bytes=1 << 16)


def write_csv(path: Path, rows: list[dict[str, str | None]]) -> Path:
    pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}).write_csv(path)
    return path


def entity_row(n: int, **changes: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "uscc": make_uscc(n),
        "name": f"Test Company {n}",
        "entity_type": "limited_liability_company",
        "industry": "C",
        "region_code": "330106",
        "registered_capital": "1000000.00",
        "established_on": "2015-04-01",
        "status": "active",
        "status_date": None,
        "source": "AMR-33",
        "reported_at": "2024-01-02T10:00:00",
    }
    row.update(changes)
    return row


def person_row(n: int, **changes: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "resident_id": make_resident_id(n),
        "residence_region": "330106",
        "education": "bachelor",
        "source": "PSB-33",
        "reported_at": "2024-01-02T10:00:00",
    }
    row.update(changes)
    return row
