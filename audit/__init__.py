"""The hash-chained decision log, replay and verification (see issue: audit)."""
