"""The one explicit normalisation ingestion may apply, and only when asked.

Validators never guess; a reporter whose files carry full-width characters, stray
spaces, hyphens or lower case in identifiers can ask for this step
(``credit-risk ingest --normalise``). It is recorded with the ingestion, with the
number of values it changed.
"""

from __future__ import annotations

import polars as pl

from records.tables import FieldKind, TableSpec

__all__ = ["normalise_identifiers"]

_IDENTIFIER_KINDS = (FieldKind.USCC, FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID)
_CODE_KINDS = (FieldKind.CODE, FieldKind.REGION, FieldKind.ENUM, FieldKind.SUBJECT_TYPE)


def normalise_identifiers(frame: pl.DataFrame, spec: TableSpec) -> tuple[pl.DataFrame, int]:
    """NFKC, trim and upper-case identifiers and codes; drop spaces and hyphens inside
    identifiers. Returns the new frame and how many values changed."""
    changed = 0
    exprs = []
    for field_spec in spec.fields:
        if frame.schema[field_spec.name] != pl.String:
            continue
        col = pl.col(field_spec.name)
        if field_spec.kind in _IDENTIFIER_KINDS:
            new = col.str.normalize("NFKC").str.replace_all(r"[\s\-‐‑–—]", "").str.to_uppercase()
        elif field_spec.kind in _CODE_KINDS:
            new = col.str.normalize("NFKC").str.strip_chars()
            if field_spec.kind is FieldKind.CODE:
                new = new.str.to_uppercase()
        else:
            continue
        exprs.append(new.alias(field_spec.name))
    if not exprs:
        return frame, 0
    updated = frame.with_columns(exprs)
    for expr in exprs:
        name = expr.meta.output_name()
        changed += int((updated[name] != frame[name]).sum())
    return updated, changed
