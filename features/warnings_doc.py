"""Renders docs/warnings.md from the warning-flag catalog (a test keeps it in sync)."""

from __future__ import annotations

from features.warnings import (
    EVIDENCE_FIELDS,
    FLAG_COLUMNS,
    RELATED_PARTY_FLAGS,
    WARNING_CATALOG,
    warning_catalog_hash,
)

__all__ = ["render_warnings_doc"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_warnings_doc() -> str:
    out = [
        "# Warning-flag catalog",
        "",
        "<!-- generated from features/warnings.py by features.warnings_doc; "
        "edit the catalog, not this file -->",
        "",
        f"{len(WARNING_CATALOG)} rules; catalog hash `{warning_catalog_hash()}`.",
        "",
        "Flags are evaluated as of a date exactly like the features: only records reported by "
        "the end of that day (`reported_at < as_of + 1 day`), the newest version of each, "
        "with event dates not after it. A public record counts while its status is "
        "'active'; a cleared record raises nothing. Relations count while valid on the "
        "as-of date. Each raised flag carries the evidence it cites and the date it has held "
        "*since*. Thresholds are parameters of the evaluation; the defaults are shown.",
        "",
        "## Rules",
        "",
        "| code | applies to | severity | description | condition | evidence | v |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rule in WARNING_CATALOG:
        kinds = ", ".join(kind.value for kind in rule.kinds)
        out.append(
            f"| `{rule.code}` | {kinds} | {rule.severity.value} | {_cell(rule.description)} | "
            f"{_cell(rule.condition)} | {_cell(rule.evidence)} | {rule.version} |"
        )
    out += [
        "",
        "## Related parties",
        "",
        "| via role | related party's flag | raises |",
        "| --- | --- | --- |",
    ]
    for role, codes in RELATED_PARTY_FLAGS.items():
        out += [f"| {role} | `{own}` | `{raised}` |" for own, raised in codes.items()]
    out += ["", "## A raised flag", "", "| column | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{name}` | {kind} | {_cell(text)} |" for name, kind, text in FLAG_COLUMNS]
    out += ["", "## Evidence items", "", "| field | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{name}` | {kind} | {_cell(text)} |" for name, kind, text in EVIDENCE_FIELDS]
    return "\n".join(out) + "\n"
