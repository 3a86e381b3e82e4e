"""``credit-risk features ...`` as a user runs it, on a generated province."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_cli import credit_risk

from features.catalog import feature_names
from records.store import RecordStore


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("features-cli")
    result = credit_risk(
        "generate",
        "--entities",
        "120",
        "--persons",
        "300",
        "--seed",
        "4",
        "--json",
        "--data-dir",
        str(directory),
    )
    assert result.returncode == 0, result.stderr
    return directory


def some_uscc(data_dir: Path) -> str:
    with RecordStore(data_dir / "store.duckdb", read_only=True) as store:
        return str(store.query("SELECT min(uscc) FROM legal_entity")[0][0])


def test_show_one_entity(data_dir: Path) -> None:
    uscc = some_uscc(data_dir)
    result = credit_risk(
        "features",
        "show",
        "--as-of",
        "2026-06-30",
        "--uscc",
        uscc,
        "--json",
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["subject_key"] == uscc and row["subject_type"] == "entity"
    assert list(row)[2:] == list(feature_names())
    text = credit_risk(
        "features", "show", "--as-of", "2026-06-30", "--uscc", uscc, "--data-dir", str(data_dir)
    )
    assert "Months since establishment" in text.stdout


def test_show_refuses_bad_identifiers_and_unknown_subjects(data_dir: Path) -> None:
    bad = credit_risk(
        "features",
        "show",
        "--as-of",
        "2026-06-30",
        "--resident-id",
        "11010519491231002x",
        "--data-dir",
        str(data_dir),
    )
    assert bad.returncode == 2 and "lowercase" in bad.stderr
    assert "11010519491231002x" not in bad.stderr
    unknown = credit_risk(
        "features",
        "show",
        "--as-of",
        "2026-06-30",
        "--uscc",
        "91350100M000100Y43",
        "--data-dir",
        str(data_dir),
    )
    assert unknown.returncode == 3 and "no such subject" in unknown.stderr
    both = credit_risk("features", "show", "--as-of", "2026-06-30", "--data-dir", str(data_dir))
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_export_all_and_a_list(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    result = credit_risk(
        "features",
        "export",
        "--as-of",
        "2026-06-30",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    table = pl.read_parquet(out)
    assert table.columns[0] == "subject_key" and table.columns[2:] == list(feature_names())
    assert table.height == 420
    listing = tmp_path / "subjects.txt"
    listing.write_text(f"# portfolio\n{some_uscc(data_dir)}\nnot-an-id\n\n91350100M000100Y43\n")
    out2 = tmp_path / "some.parquet"
    result = credit_risk(
        "features",
        "export",
        "--as-of",
        "2026-06-30",
        "--out",
        str(out2),
        "--subjects",
        str(listing),
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    assert f"{listing}:3:" in result.stderr and "1 listed subject(s) not on file" in result.stderr
    assert pl.read_parquet(out2).height == 1


def test_materialise_persists_with_the_catalog_hash(data_dir: Path) -> None:
    result = credit_risk(
        "features", "materialise", "--as-of", "2026-06-30", "--data-dir", str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["subjects"] == 420
    with RecordStore(data_dir / "store.duckdb", read_only=True) as store:
        assert store.query("SELECT subjects, catalog_hash FROM feature_snapshot") == [
            (420, report["catalog_hash"])
        ]
