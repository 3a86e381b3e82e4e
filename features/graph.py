"""Relations as plain tuples, and the in-memory relation graph of the feature store.

A refresh walks two rings of related parties around the touched subjects; with the graph
in memory that walk is set and dictionary operations instead of indexed reads. The graph
is filled by the same point-in-time read the pipeline uses, and the feature store reads
the relations of touched subjects again before each refresh, so it never walks stale ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

__all__ = ["RELATION_SCHEMA", "Relation", "RelationGraph", "relation_frame", "relation_tuples"]

Relation = tuple[str, str, str, int | None]  # uscc, person_key, role, share_bp
RELATION_SCHEMA: dict[str, pl.DataType] = {
    "uscc": pl.String(),
    "person_key": pl.String(),
    "role": pl.String(),
    "share_bp": pl.Int64(),
}


def relation_tuples(frame: pl.DataFrame) -> list[Relation]:
    return [
        (str(u), str(p), str(r), None if s is None else int(s))
        for u, p, r, s in frame.select(list(RELATION_SCHEMA)).iter_rows()
    ]


def relation_frame(relations: Iterable[Relation]) -> pl.DataFrame:
    ordered = sorted(relations, key=lambda r: (r[0], r[1], r[2], -1 if r[3] is None else r[3]))
    return pl.DataFrame(ordered, schema=RELATION_SCHEMA, orient="row")


class RelationGraph:
    """Valid relations at one as-of date, indexed by both ends."""

    def __init__(self, relations: Iterable[Relation] = ()) -> None:
        self._by_key: dict[str, set[Relation]] = {}
        self.add(relations)

    def add(self, relations: Iterable[Relation]) -> None:
        for relation in relations:
            self._by_key.setdefault(relation[0], set()).add(relation)
            self._by_key.setdefault(relation[1], set()).add(relation)

    def relations_of(self, keys: Iterable[str]) -> set[Relation]:
        """Relations involving any of ``keys`` (USCCs or person keys)."""
        found: set[Relation] = set()
        for key in keys:
            found |= self._by_key.get(key, set())
        return found

    def replace(self, keys: Iterable[str], relations: Iterable[Relation]) -> None:
        """Forget every relation involving ``keys``, then add ``relations`` (freshly read)."""
        for key in keys:
            for relation in self._by_key.pop(key, set()):
                for end in (relation[0], relation[1]):
                    others = self._by_key.get(end)
                    if others is not None:
                        others.discard(relation)
        self.add(relations)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values()) // 2
