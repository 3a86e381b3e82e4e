"""Records: the DuckDB store, identifiers, ingestion and the synthetic province generator."""
