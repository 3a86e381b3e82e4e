"""Building the records layer's objects from the settings."""

from __future__ import annotations

from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser, load_or_create_secret
from records.store import RecordStore
from settings import Settings

__all__ = ["make_ingestor", "make_pseudonymiser", "open_store"]


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
