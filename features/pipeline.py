"""The point-in-time feature pipeline: one definition for training, batch and online.

``build(store, as_of)`` returns one row per subject known at ``as_of``: ``subject_type``,
``subject_key`` (USCC, or the person's pseudonym), then every catalog feature in catalog
order. Features that do not apply to a subject's kind are null. Only records reported by
the end of the as-of day, with event dates not after it, are seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date

import polars as pl

from features.catalog import CATALOG, FeatureDtype, SubjectKind, feature_names
from features.graph import Relation, RelationGraph, relation_frame, relation_tuples
from features.own import (
    apply_scales,
    entity_attributes,
    inquiry_features,
    person_attributes,
    public_record_features,
    repayment_features,
)
from features.related import entity_distress, entity_related, person_distress, person_related
from features.sources import (
    PointInTime,
    SharedCreditReads,
    Sources,
    load_relations,
    load_sources,
)
from records.store import RecordStore

__all__ = [
    "KEY",
    "TYPE",
    "RelationWalk",
    "build",
    "catalog_rows",
    "neighbourhood",
    "output_schema",
    "own_features",
    "related_features",
]

KEY = "subject_key"
TYPE = "subject_type"
_ZERO_WHEN_ABSENT = ("pub_", "inq_")  # registries and inquiries cover every subject


def output_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {TYPE: pl.String(), KEY: pl.String()}
    for spec in CATALOG:
        schema[spec.name] = pl.Float64() if spec.dtype is FeatureDtype.FLOAT else pl.Int64()
    return schema


class RelationWalk:
    """Valid relations around sets of subjects, each subject's fetched at most once."""

    def __init__(
        self,
        store: RecordStore,
        point: PointInTime,
        loader: Callable[[list[str]], Iterable[Relation]] | None = None,
    ) -> None:
        # By default relations are read from the store; the feature store passes its
        # in-memory graph of the same relations instead.
        self._load = loader or (lambda keys: relation_tuples(load_relations(store, point, keys)))
        self._queried: set[str] = set()
        self._graph = RelationGraph()
        self._all: set[Relation] = set()

    def around(self, keys: set[str]) -> set[Relation]:
        new = sorted(keys - self._queried)
        if new:
            loaded = list(self._load(new))
            self._graph.add(loaded)
            self._all.update(loaded)
            self._queried.update(new)
        return self._graph.relations_of(keys)

    def relations(self) -> pl.DataFrame:
        return relation_frame(self._all)

    def neighbourhood(self, subjects: set[str]) -> set[str]:
        """``subjects``, their related parties, and the companies those parties relate to:
        everyone whose own records the related-party features of ``subjects`` read."""
        first = self.around(subjects)
        persons = {relation[1] for relation in first}
        second = self.around(persons)
        companies = {relation[0] for relation in first | second}
        return subjects | persons | companies


def neighbourhood(store: RecordStore, point: PointInTime, subjects: Sequence[str]) -> list[str]:
    """The subjects whose own records the related-party features of ``subjects`` read:
    their related parties, and the companies those parties control."""
    return sorted(RelationWalk(store, point).neighbourhood(set(subjects)))


def _own(src: Sources, point: PointInTime, home_province: str) -> pl.DataFrame:
    base = pl.concat(
        [
            src.entities.select(pl.lit(SubjectKind.ENTITY.value).alias(TYPE), KEY),
            src.persons.select(pl.lit(SubjectKind.PERSON.value).alias(TYPE), KEY),
        ]
    )
    attributes = pl.concat(
        [
            entity_attributes(src, point, home_province),
            person_attributes(src, point, home_province),
        ],
        how="diagonal",
    )
    own = base
    for part in (
        repayment_features(src, point),
        public_record_features(src, point),
        inquiry_features(src, point),
        attributes,
    ):
        own = own.join(part, on=KEY, how="left")
    zero_fill = [
        c
        for c in own.columns
        if c.startswith(_ZERO_WHEN_ABSENT) and not c.endswith("_months_since")
    ]
    return apply_scales(own.with_columns(pl.col(zero_fill).fill_null(0)))


def own_features(
    store: RecordStore, point: PointInTime, subjects: Sequence[str] | None, home_province: str
) -> pl.DataFrame:
    """Own features (no related-party ones) of ``subjects`` (all when None)."""
    return _own(load_sources(store, point, subjects, related=False), point, home_province)


def related_features(
    wanted: pl.DataFrame, relations: pl.DataFrame, own: pl.DataFrame, defaults: pl.DataFrame
) -> pl.DataFrame:
    """Related-party features of the ``wanted`` subjects (TYPE, KEY), given the valid
    relations around them and the own features of their related parties."""
    is_entity = pl.col(TYPE) == SubjectKind.ENTITY.value
    companies = entity_distress(own.filter(is_entity), defaults)
    related = pl.concat(
        [
            entity_related(
                wanted.filter(is_entity)[KEY],
                relations,
                person_distress(own.filter(~is_entity)),
                companies,
            ),
            person_related(wanted.filter(~is_entity)[KEY], relations, companies),
        ],
        how="diagonal",
    )
    return apply_scales(related)


def catalog_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """TYPE, KEY and the catalog's columns in order and dtype; features that do not apply
    to a subject's kind are null."""
    schema = output_schema()
    columns: list[pl.Expr] = [pl.col(TYPE), pl.col(KEY)]
    every_kind = set(SubjectKind)
    for spec in CATALOG:
        value = pl.col(spec.name) if spec.name in rows.columns else pl.lit(None)
        if set(spec.kinds) != every_kind:
            applies = pl.col(TYPE).is_in([kind.value for kind in spec.kinds])
            value = pl.when(applies).then(value)
        columns.append(value.cast(schema[spec.name]).alias(spec.name))
    out = rows.select(columns).sort(TYPE, KEY)
    assert tuple(out.columns[2:]) == feature_names()
    return out


def build(
    store: RecordStore,
    as_of: date,
    subjects: Sequence[str] | None = None,
    *,
    home_province: str = "33",
    retention_years: int = 5,
    credit_reads: SharedCreditReads | None = None,
) -> pl.DataFrame:
    """Feature rows of every subject (or of ``subjects``, by key) as of ``as_of``;
    ``credit_reads`` shares the credit tables' read with the warning rules of the job."""
    point = PointInTime(as_of, retention_years)
    scope = None if subjects is None else neighbourhood(store, point, subjects)
    src = load_sources(store, point, scope, credit_reads=credit_reads)
    own = _own(src, point, home_province)
    wanted = own if subjects is None else own.filter(pl.col(KEY).is_in(list(subjects)))
    related = related_features(wanted.select(TYPE, KEY), src.relations, own, src.defaults)
    return catalog_rows(wanted.join(related, on=KEY, how="left"))
