"""The installed ``credit-risk`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import entity_row, held_open_elsewhere, write_csv

from features.catalog_doc import render_features_doc
from features.warnings_doc import render_warnings_doc
from records.catalog_doc import render_data_format

REPO = Path(__file__).resolve().parents[2]


def credit_risk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("credit-risk", path=str(Path(sys.executable).parent))
    assert executable, "credit-risk console script is not installed"
    return subprocess.run(
        [executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_ingest_json_summary_reconciles(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "le.csv", [entity_row(1), entity_row(2, established_on="2023-02-30")]
    )
    result = credit_risk(
        "ingest", "legal_entity", str(path), "--json", "--data-dir", str(tmp_path / "data")
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["read"] == summary["accepted"] + summary["duplicate"] + summary["rejected"]
    assert (summary["accepted"], summary["rejected"]) == (1, 1)
    assert summary["reasons"] == {"invalid_date": 1}
    assert (tmp_path / "data" / "store.duckdb").exists()
    assert (tmp_path / "data" / "secrets" / "pseudonym.key").exists()


def test_data_dir_from_environment(tmp_path: Path) -> None:
    result = credit_risk("store-info", env={"CREDIT_RISK_DATA_DIR": str(tmp_path / "env-data")})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["store"] == str(tmp_path / "env-data" / "store.duckdb")
    assert info["rows"]["legal_entity"] == 0


def test_bad_table_and_bad_file_are_clear_errors(tmp_path: Path) -> None:
    result = credit_risk("ingest", "no_such_table", "x.csv", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "unknown table 'no_such_table'" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = credit_risk("ingest", "legal_entity", str(bad), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "missing columns" in result.stderr and "Traceback" not in result.stderr


def test_a_store_held_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert credit_risk("store-info", "--data-dir", str(data_dir)).returncode == 0
    store = data_dir / "store.duckdb"
    with held_open_elsewhere(store) as holder:
        for command in (("store-info",), ("generate", "--entities", "5", "--persons", "5")):
            result = credit_risk(*command, "--data-dir", str(data_dir))
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr
            assert f"records store {store} is in use by another process" in result.stderr
            assert f"(process {holder})" in result.stderr


def test_no_registered_model_is_a_clear_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = credit_risk(
        "score-batch", "--as-of", "2026-06-30", "--all", "--out", str(tmp_path / "o.parquet"),
        "--no-progress", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no current model" in result.stderr and "credit-risk train" in result.stderr


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = credit_risk("store-info", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "missing.toml" in result.stderr


@pytest.mark.parametrize("name", ["data-format.md", "features.md", "warnings.md"])
def test_generated_docs_are_up_to_date(name: str) -> None:
    documents = {
        "data-format.md": render_data_format(),
        "features.md": render_features_doc(),
        "warnings.md": render_warnings_doc(),
    }
    committed = (REPO / "docs" / name).read_text(encoding="utf-8")
    assert committed == documents[name], f"docs/{name} is stale: run `credit-risk docs`"
