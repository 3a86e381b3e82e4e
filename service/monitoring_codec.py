"""Between the monitoring messages (watchlists, alerts, reported records) and the domain."""

from __future__ import annotations

from typing import Any

from creditrisk.v1 import credit_risk_pb2, records_pb2
from records.ingest import IngestSummary
from service.alerts import Alert, AlertKind
from service.codec import (
    GRADE_VALUES,
    subject_query,
    timestamp_message,
    warning_message,
)
from service.intake import ReportedBatch
from service.monitoring import WatchItem
from service.problems import InvalidRequest

__all__ = [
    "TABLES",
    "decode_alert_kinds",
    "decode_batch",
    "decode_watchlist",
    "encode_alert",
    "encode_batch_result",
]

ALERT_KINDS: dict[int, AlertKind] = {
    credit_risk_pb2.ALERT_KIND_RAISED: AlertKind.RAISED,
    credit_risk_pb2.ALERT_KIND_CLEARED: AlertKind.CLEARED,
    credit_risk_pb2.ALERT_KIND_GRADE_CHANGE: AlertKind.GRADE_CHANGE,
    credit_risk_pb2.ALERT_KIND_SCORE_MOVE: AlertKind.SCORE_MOVE,
}
_ALERT_KIND_VALUES: dict[AlertKind, Any] = {kind: value for value, kind in ALERT_KINDS.items()}
TABLES: dict[int, str] = {
    value.number: value.name.removeprefix("RECORD_TABLE_").lower()
    for value in records_pb2.RecordTable.DESCRIPTOR.values
    if value.number != records_pb2.RECORD_TABLE_UNSPECIFIED
}
_TABLE_VALUES: dict[str, Any] = {name: value for value, name in TABLES.items()}


def decode_watchlist(request: credit_risk_pb2.WatchlistRequest) -> list[WatchItem]:
    return [
        WatchItem(subject_query(item.subject), item.reference, item.authorization_id)
        for item in request.subjects
    ]


def decode_alert_kinds(request: credit_risk_pb2.WatchRequest) -> set[AlertKind]:
    kinds = set()
    for index, value in enumerate(request.kinds):
        try:
            kinds.add(ALERT_KINDS[value])
        except KeyError:
            raise InvalidRequest(
                f"kinds[{index}]", "unknown_value", f"kinds[{index}] is not a known AlertKind"
            ) from None
    return kinds


def encode_alert(alert: Alert) -> credit_risk_pb2.Alert:
    change = alert.change
    message = credit_risk_pb2.Alert(
        alert_id=alert.alert_id,
        watch_reference=alert.reference,
        kind=_ALERT_KIND_VALUES[change.kind],
        time=timestamp_message(alert.raised_at),
        decision_id=alert.decision_id,
    )
    if alert.subject_type == "entity":
        message.subject.uscc = alert.subject_key
    else:
        message.subject_pseudonym = alert.subject_key
    if change.warning is not None:
        message.warning.CopyFrom(warning_message(change.warning))
    if change.via is not None:
        message.via.CopyFrom(message.warning.via)
    if change.old_grade is not None:
        message.old_grade = GRADE_VALUES[change.old_grade]
    if change.new_grade is not None:
        message.new_grade = GRADE_VALUES[change.new_grade]
    if change.old_score is not None:
        message.old_score = change.old_score
    if change.new_score is not None:
        message.new_score = change.new_score
    return message


def decode_batch(batch: records_pb2.RecordBatch) -> ReportedBatch:
    table = TABLES.get(batch.table)
    if table is None and batch.table != records_pb2.RECORD_TABLE_UNSPECIFIED:
        raise InvalidRequest("table", "unknown_value", f"table {batch.table} is not a RecordTable")
    return ReportedBatch(
        batch_id=batch.batch_id, table=table, rows=[dict(row.fields) for row in batch.rows]
    )


def encode_batch_result(
    batch: records_pb2.RecordBatch, summary: IngestSummary
) -> records_pb2.BatchResult:
    references = [row.reference for row in batch.rows]
    return records_pb2.BatchResult(
        batch_id=batch.batch_id,
        table=_TABLE_VALUES[summary.table],
        read=summary.read,
        accepted=summary.accepted,
        duplicate=summary.duplicate,
        rejected=summary.rejected,
        rejections=[
            records_pb2.RejectedRow(
                row=r.row,
                reference=references[r.row] if 0 <= r.row < len(references) else "",
                field=r.field or "",
                reason=r.reason,
                detail=r.message,
            )
            for r in summary.rejections
        ],
    )
