"""The embedded DuckDB records store: open, migrate, transact.

One :class:`RecordStore` wraps one DuckDB connection to one file. Opening a store
made by an older release upgrades it; a store made by a newer release is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from records.migrations import MIGRATIONS, latest_version

__all__ = [
    "RecordStore",
    "StoreLockedError",
    "StoreVersionError",
    "connect_database",
    "quote_identifier",
]

_VERSION_TABLE = "schema_migration"


class StoreVersionError(RuntimeError):
    """The store's schema version is not one this release can open."""


class StoreLockedError(RuntimeError):
    """Another process holds a database file (DuckDB lets one process open it at a time
    once any process writes to it)."""

    def __init__(self, what: str, path: str, detail: str) -> None:
        holder = re.search(r"PID (\d+)", detail)
        by = f" (process {holder.group(1)})" if holder else ""
        super().__init__(
            f"{what} {path} is in use by another process{by}: DuckDB lets one process at "
            "a time open it; stop that process (a running server, say) and run this again"
        )


def connect_database(
    path: str,
    *,
    read_only: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
    what: str = "the records store",
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``path`` with the store settings' limits; a file held by
    another process is a :class:`StoreLockedError` naming ``what`` it is."""
    config: dict[str, Any] = {}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    try:
        return duckdb.connect(path, read_only=read_only, config=config)
    except duckdb.IOException as err:
        if "Could not set lock" in str(err):
            raise StoreLockedError(what, path, str(err)) from None
        raise


def quote_identifier(name: str) -> str:
    """Quote a table or column name taken from the code's own declarations."""
    return '"' + name.replace('"', '""') + '"'


class RecordStore:
    """A records store in one DuckDB file (or ``:memory:``)."""

    def __init__(
        self,
        path: Path | str,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = connect_database(
            self.path, read_only=read_only, threads=threads, memory_limit=memory_limit
        )
        self.read_only = read_only
        self._migrate()

    # -- lifecycle -----------------------------------------------------------------

    def cursor(self) -> RecordStore:
        """Another handle on the same open database, for use from another thread."""
        view = object.__new__(RecordStore)
        view.path = self.path
        view.read_only = self.read_only
        view.connection = self.connection.cursor()
        return view

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self.connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
            [_VERSION_TABLE],
        ).fetchall()
        if not exists or exists[0][0] == 0:
            return 0
        row = self.connection.execute(
            f"SELECT coalesce(max(version), 0) FROM {_VERSION_TABLE}"
        ).fetchall()
        return int(row[0][0]) if row else 0

    def _migrate(self) -> None:
        current = self.schema_version()
        latest = latest_version()
        if current > latest:
            raise StoreVersionError(
                f"store {self.path!r} has schema version {current}, newer than this release "
                f"understands ({latest}); upgrade the software, do not downgrade the store"
            )
        if current == latest:
            return
        if self.read_only:
            raise StoreVersionError(
                f"store {self.path!r} has schema version {current} and needs upgrading to "
                f"{latest}; open it once read-write to migrate"
            )
        with self.transaction():
            self.run(
                f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} ("
                "version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, "
                "applied_at TIMESTAMP NOT NULL)"
            )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    self.run(statement)
                self.run(
                    f"INSERT INTO {_VERSION_TABLE} VALUES (?, ?, ?)",
                    [migration.version, migration.description, _utc_now()],
                )

    # -- transactions and queries ----------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit on success, roll back on any exception."""
        self.run("BEGIN TRANSACTION")
        try:
            yield self.connection
        except BaseException:
            self.run("ROLLBACK")
            raise
        self.run("COMMIT")

    def run(
        self, sql: str, parameters: Sequence[object] | Mapping[str, object] | None = None
    ) -> None:
        """Execute a statement and drain its result (DuckDB 2 keeps it pending otherwise)."""
        self.connection.execute(sql, parameters).fetchall()

    def query(
        self, sql: str, parameters: Sequence[object] | Mapping[str, object] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, parameters).fetchall()

    def scalar(self, sql: str, parameters: Sequence[object] | None = None) -> Any:
        row = self.connection.execute(sql, parameters).fetchall()
        return row[0][0] if row else None

    def count(self, table: str) -> int:
        row = self.connection.execute(f"SELECT count(*) FROM {quote_identifier(table)}").fetchall()
        return int(row[0][0]) if row else 0

    def columns(self, table: str) -> list[str]:
        rows = self.connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return [str(r[0]) for r in rows]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
