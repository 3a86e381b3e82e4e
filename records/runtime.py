"""Building the records layer's objects from the settings."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from records.ingest import Ingestor, IngestSummary
from records.pseudonym import Pseudonymiser, load_or_create_secret
from records.store import RecordStore
from settings import Settings

__all__ = ["ingest_frames", "make_ingestor", "make_pseudonymiser", "open_store"]


def open_store(settings: Settings, *, read_only: bool = False) -> RecordStore:
    return RecordStore(
        settings.store_path,
        threads=settings.store.threads,
        memory_limit=settings.store.memory_limit,
        read_only=read_only,
    )


def make_pseudonymiser(settings: Settings) -> Pseudonymiser:
    return Pseudonymiser(load_or_create_secret(settings.pseudonym_secret_path))


def make_ingestor(
    settings: Settings, store: RecordStore, *, normalise: bool = False, progress: bool = False
) -> Ingestor:
    return Ingestor(
        store,
        make_pseudonymiser(settings),
        keep_resident_id=settings.privacy.store_raw_resident_id,
        normalise=normalise,
        batch_rows=settings.ingest.batch_rows,
        csv_block_bytes=settings.ingest.csv_block_bytes,
        progress=progress,
    )


def ingest_frames(
    ingestor: Ingestor, frames: Mapping[str, pl.DataFrame], *, label: str
) -> dict[str, IngestSummary]:
    """Ingest a frame per table (e.g. a generated province), in reference order."""
    from records.tables import TABLE_ORDER

    return {
        table: ingestor.ingest_frame(table, frames[table], label=f"{label}:{table}")
        for table in TABLE_ORDER
        if table in frames
    }
