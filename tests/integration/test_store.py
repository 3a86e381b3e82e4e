from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from records.migrations import latest_version
from records.store import RecordStore, StoreVersionError
from records.tables import TABLES

BOOKKEEPING = ["record_hash", "ingestion_id"]


def test_new_store_is_at_latest_version(store: RecordStore) -> None:
    assert store.schema_version() == latest_version()


def test_stored_columns_match_the_declared_tables(store: RecordStore) -> None:
    for name, spec in TABLES.items():
        assert store.columns(name) == [*spec.stored_columns, *BOOKKEEPING], name


def test_older_store_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()  # a version-0 store: no schema at all
    with RecordStore(path) as store:
        assert store.schema_version() == latest_version()
        assert store.count("legal_entity") == 0


def test_newer_store_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with RecordStore(path) as store:
        store.run("INSERT INTO schema_migration VALUES (999, 'from the future', now())")
    with pytest.raises(StoreVersionError, match="schema version 999, newer than"):
        RecordStore(path)


def test_read_only_store_needing_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ro.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreVersionError, match="needs upgrading"):
        RecordStore(path, read_only=True)


def test_transaction_rolls_back_on_error(store: RecordStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.run(
            "INSERT INTO ingestion (ingestion_id, table_name, file, started_at, status) "
            "VALUES (1, 't', 'f', now(), 'x')"
        )
        raise RuntimeError("boom")
    assert store.count("ingestion") == 0


def test_a_version_1_store_gains_the_indexes_of_version_2(tmp_path: Path) -> None:
    from records.migrations import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute(
        "CREATE TABLE schema_migration (version INTEGER PRIMARY KEY, "
        "description VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    ).fetchall()
    for statement in MIGRATIONS[0].statements:
        connection.execute(statement).fetchall()
    connection.execute("INSERT INTO schema_migration VALUES (1, 'v1', now())").fetchall()
    connection.close()
    with RecordStore(path) as store:
        assert store.schema_version() == latest_version() >= 2
        indexes = {r[0] for r in store.query("SELECT index_name FROM duckdb_indexes()")}
        assert {"credit_account_subject", "repayment_account", "relation_person"} <= indexes
