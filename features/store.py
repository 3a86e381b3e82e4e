"""The materialised feature store: every subject's row as of a date, in DuckDB and in memory.

``materialise`` runs the pipeline over every subject, writes the rows with the catalog hash
into DuckDB and keeps them as a float64 matrix plus a key → row index, so an online lookup
is a dictionary access. ``refresh`` recomputes, with the same pipeline, only the subjects
whose features can depend on the given subjects' records (they, their related parties and
their related parties' companies) and swaps the new rows in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from features.catalog import CATALOG, catalog_hash, feature_names
from features.graph import RelationGraph, relation_tuples
from features.pipeline import (
    KEY,
    TYPE,
    RelationWalk,
    build,
    catalog_rows,
    output_schema,
    own_features,
    related_features,
)
from features.sources import (
    PointInTime,
    load_defaults,
    load_relations,
    read_all_defaults,
    read_all_relations,
)
from records.store import RecordStore, quote_identifier

__all__ = ["FeatureStore", "FeatureVector", "snapshot_table"]

_META_DDL = """
CREATE TABLE IF NOT EXISTS feature_snapshot (
    snapshot_table VARCHAR NOT NULL,
    as_of DATE NOT NULL,
    catalog_hash VARCHAR NOT NULL,
    subjects BIGINT NOT NULL,
    materialised_at TIMESTAMP NOT NULL,
    refreshed_at TIMESTAMP
)
"""


def snapshot_table(hash_: str | None = None) -> str:
    """The wide table of the current catalog: its columns are the catalog's."""
    return f"feature_rows_{(hash_ or catalog_hash())[:16]}"


@dataclass(frozen=True)
class FeatureVector:
    subject_type: str
    subject_key: str
    as_of: date
    values: npt.NDArray[np.float64]  # catalog order, NaN = absent


class FeatureStore:
    """Materialised rows of one as-of date, served from memory.

    ``lookup`` is safe from any number of threads; ``materialise``, ``load`` and
    ``refresh`` are meant for one maintenance thread at a time.
    """

    def __init__(
        self, records: RecordStore, *, home_province: str = "33", retention_years: int = 5
    ) -> None:
        self.records = records
        self.home_province = home_province
        self.retention_years = retention_years
        self.catalog_hash = catalog_hash()
        self.names = feature_names()
        self.as_of: date | None = None
        self._matrix: npt.NDArray[np.float64] = np.empty((0, len(self.names)))
        self._types: list[str] = []
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-refresh")
        self._graph: RelationGraph | None = None
        self._defaults: pl.DataFrame = pl.DataFrame()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-persist")
        self._pending: list[Future[None]] = []

    # -- building ---------------------------------------------------------------------------

    def _build(self, as_of: date, subjects: Sequence[str] | None) -> pl.DataFrame:
        return build(
            self.records,
            as_of,
            subjects,
            home_province=self.home_province,
            retention_years=self.retention_years,
        )

    def materialise(self, as_of: date) -> pl.DataFrame:
        """Compute every subject's row as of ``as_of``, persist it, and serve it."""
        self.flush()
        rows = self._build(as_of, None)
        table = snapshot_table(self.catalog_hash)
        with self.records.transaction():
            self._ensure_tables()
            self.records.run(f"DELETE FROM {table} WHERE as_of = ?", [as_of])
            _insert(self.records, table, as_of, rows)
            self.records.run(
                "DELETE FROM feature_snapshot WHERE snapshot_table = ? AND as_of = ?",
                [table, as_of],
            )
            self.records.run(
                "INSERT INTO feature_snapshot VALUES (?, ?, ?, ?, ?, NULL)",
                [table, as_of, self.catalog_hash, rows.height, _now()],
            )
        self._load(as_of, rows)
        return rows

    def load(self, as_of: date) -> None:
        """Serve a snapshot materialised earlier (same catalog hash)."""
        self.flush()
        table = snapshot_table(self.catalog_hash)
        self._ensure_tables()
        found = self.records.query(
            "SELECT count(*) FROM feature_snapshot WHERE snapshot_table = ? AND as_of = ?",
            [table, as_of],
        )
        if not found or found[0][0] == 0:
            raise LookupError(
                f"no feature snapshot as of {as_of} for catalog {self.catalog_hash[:16]}; "
                "run `credit-risk features materialise` first"
            )
        columns = ", ".join(quote_identifier(c) for c in output_schema())
        arrow = self.records.connection.sql(
            f"SELECT {columns} FROM {table} WHERE as_of = $as_of ORDER BY subject_type, "
            "subject_key",
            params={"as_of": as_of},
        ).to_arrow_table()
        rows = pl.from_arrow(arrow)
        assert isinstance(rows, pl.DataFrame)
        self._load(as_of, rows)

    def latest_as_of(self) -> date | None:
        """The newest as-of date materialised for the running catalog, if any."""
        self._ensure_tables()
        latest = self.records.scalar(
            "SELECT max(as_of) FROM feature_snapshot WHERE snapshot_table = ?",
            [snapshot_table(self.catalog_hash)],
        )
        return latest if isinstance(latest, date) else None

    def refresh(
        self,
        subjects: Sequence[str],
        on_neighbourhood: Callable[[list[str], list[str]], object] | None = None,
    ) -> pl.DataFrame:
        """Recompute the rows that ``subjects``' records can affect, swap them in and
        return them. Own features are recomputed for the touched subjects only; the
        related-party features of everyone around them are recomputed from the relations
        and from the materialised own features of their related parties, by the same
        functions a full build uses (a test checks the result equals a full rebuild).
        The rows are served as soon as this returns; writing them to the snapshot table
        happens behind, in order (``flush`` waits for it). ``on_neighbourhood`` is called,
        as soon as they are known and before the rows are computed, with the subjects whose
        rows will change and the neighbourhood their related-party features read (to
        evaluate their warning flags alongside, say)."""
        if self.as_of is None or self._graph is None:
            raise RuntimeError("nothing materialised yet")
        point = PointInTime(self.as_of, self.retention_years)
        touched = set(subjects)
        keys = sorted(touched)
        # The touched subjects' records are read on a second cursor while their relations
        # are read again and the rings around them walked in memory on this one.
        with self.records.cursor() as cursor:
            reads = self._pool.submit(_touched_reads, cursor, point, keys, self.home_province)
            self._graph.replace(touched, relation_tuples(load_relations(self.records, point, keys)))
            walk = RelationWalk(self.records, point, loader=self._graph.relations_of)
            affected = walk.neighbourhood(touched)  # whose rows can change
            ring = walk.neighbourhood(affected)  # whose own features those rows read
            if on_neighbourhood is not None:
                on_neighbourhood(sorted(affected), sorted(ring))
            fresh, touched_defaults = reads.result()
        self._defaults = self._defaults.filter(~pl.col(KEY).is_in(keys)).vstack(
            touched_defaults.select(self._defaults.columns)
        )
        with self._lock:
            known = {key for key in ring if key in self._index}
        unknown = sorted(ring - known - touched)  # e.g. reported since materialising
        if unknown:
            fresh = pl.concat(
                [fresh, own_features(self.records, point, unknown, self.home_province)],
                how="diagonal_relaxed",
            )
        stored = self._own_rows(sorted(known - touched))
        own = pl.concat([fresh, stored], how="diagonal_relaxed")
        around = own.filter(pl.col(KEY).is_in(list(affected)))
        defaults = self._defaults.filter(pl.col(KEY).is_in(list(ring)))
        related = related_features(around.select(TYPE, KEY), walk.relations(), own, defaults)
        rows = catalog_rows(around.join(related, on=KEY, how="left"))
        self._swap(rows)
        self._pending = [*self._unsettled(), self._writer.submit(self._persist, rows)]
        return rows

    @property
    def unsettled_writes(self) -> int:
        """Refreshed rows' writes to the snapshot table still running, or failed (for
        :meth:`flush` to raise)."""
        self._pending = self._unsettled()
        return len(self._pending)

    def _unsettled(self) -> list[Future[None]]:
        # Finished writes are dropped as they settle: a running service refreshes without end.
        return [write for write in self._pending if not write.done() or write.exception()]

    def flush(self) -> None:
        """Wait until every refreshed row is in the snapshot table; raise a write error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _own_rows(self, keys: Sequence[str]) -> pl.DataFrame:
        """Materialised own (not related-party) features of ``keys``, as the pipeline
        would produce them: NaN back to null, integer features back to integers."""
        own_names = [spec.name for spec in CATALOG if spec.group != "related_party"]
        positions = [self.names.index(name) for name in own_names]
        with self._lock:
            rows = [self._index[key] for key in keys]
            values = (
                self._matrix[np.ix_(rows, positions)] if rows else np.empty((0, len(positions)))
            )
            types = [self._types[row] for row in rows]
        schema = output_schema()
        frame = pl.DataFrame(
            {TYPE: types, KEY: list(keys)}, schema={TYPE: pl.String, KEY: pl.String}
        )
        columns = pl.DataFrame(values, schema=own_names, orient="row").with_columns(
            pl.all().fill_nan(None)
        )
        return pl.concat([frame, columns], how="horizontal").with_columns(
            [pl.col(name).cast(schema[name]) for name in own_names]
        )

    def _persist(self, rows: pl.DataFrame) -> None:
        table = snapshot_table(self.catalog_hash)
        with self.records.cursor() as writer, writer.transaction():
            writer.run(
                f"DELETE FROM {table} WHERE as_of = $as_of AND subject_key IN "
                "(SELECT unnest($keys))",
                {"as_of": self.as_of, "keys": rows[KEY].to_list()},
            )
            _insert(writer, table, self.as_of, rows)  # type: ignore[arg-type]
            writer.run(
                "UPDATE feature_snapshot SET refreshed_at = ? WHERE snapshot_table = ? "
                "AND as_of = ?",
                [_now(), table, self.as_of],
            )

    def _swap(self, rows: pl.DataFrame) -> None:
        keys = rows[KEY].to_list()
        values = _matrix(rows)
        types = rows[TYPE].to_list()
        with self._lock:
            new_keys = [k for k in keys if k not in self._index]
            if new_keys:
                grown = np.full((len(self._types) + len(new_keys), len(self.names)), np.nan)
                grown[: len(self._types)] = self._matrix
                for key in new_keys:
                    self._index[key] = len(self._types)
                    self._types.append("")
                self._matrix = grown
            for position, key in enumerate(keys):
                row = self._index[key]
                self._matrix[row] = values[position]
                self._types[row] = types[position]

    # -- serving ------------------------------------------------------------------------------

    def lookup(self, subject_key: str) -> FeatureVector | None:
        row = self._index.get(subject_key)
        if row is None or self.as_of is None:
            return None
        return FeatureVector(self._types[row], subject_key, self.as_of, self._matrix[row].copy())

    def subject_keys(self) -> list[str]:
        """Every served subject's key."""
        with self._lock:
            return list(self._index)

    def rows(self, keys: Sequence[str]) -> tuple[list[str], npt.NDArray[np.float64]]:
        """The subject types and a copy of the feature rows of ``keys`` (all served)."""
        with self._lock:
            positions = [self._index[key] for key in keys]
            return [self._types[p] for p in positions], self._matrix[positions]

    def __len__(self) -> int:
        return len(self._index)

    # -- internals ------------------------------------------------------------------------------

    def _ensure_tables(self) -> None:
        self.records.run(_META_DDL)
        columns = ", ".join(
            f"{quote_identifier(name)} {'DOUBLE' if dtype == pl.Float64 else 'BIGINT'}"
            for name, dtype in output_schema().items()
            if name not in (TYPE, KEY)
        )
        self.records.run(
            f"CREATE TABLE IF NOT EXISTS {snapshot_table(self.catalog_hash)} ("
            f"as_of DATE NOT NULL, subject_type VARCHAR NOT NULL, subject_key VARCHAR NOT NULL, "
            f"{columns})"
        )
        # refresh() replaces a few rows among millions: find them by key, not by scan.
        self.records.run(
            f"CREATE INDEX IF NOT EXISTS {snapshot_table(self.catalog_hash)}_key "
            f"ON {snapshot_table(self.catalog_hash)} (subject_key)"
        )

    def _load(self, as_of: date, rows: pl.DataFrame) -> None:
        point = PointInTime(as_of, self.retention_years)
        graph = RelationGraph(relation_tuples(read_all_relations(self.records, point)))
        defaults = read_all_defaults(self.records, point)
        matrix = _matrix(rows)
        index = {key: i for i, key in enumerate(rows[KEY].to_list())}
        types = rows[TYPE].to_list()
        with self._lock:
            self._matrix, self._index, self._types, self.as_of = matrix, index, types, as_of
            self._graph = graph
            self._defaults = defaults


def _insert(store: RecordStore, table: str, as_of: date, rows: pl.DataFrame) -> None:
    frame = rows.select(pl.lit(as_of).alias("as_of"), pl.all())
    store.connection.register("_feature_rows", frame.to_arrow())
    try:
        store.run(f"INSERT INTO {table} BY NAME SELECT * FROM _feature_rows")
    finally:
        store.connection.unregister("_feature_rows")


def _touched_reads(
    store: RecordStore, point: PointInTime, keys: list[str], home_province: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What a refresh reads of the touched subjects themselves: own features, defaults."""
    return own_features(store, point, keys, home_province), load_defaults(store, point, keys)


def _matrix(rows: pl.DataFrame) -> npt.NDArray[np.float64]:
    names = list(feature_names())
    return rows.select(pl.col(names).cast(pl.Float64)).to_numpy().astype(np.float64, copy=False)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
