"""The Audit servicer (regulator role only, enforced by the auth interceptor): read the
decision log, replay a decision, verify the chain, a model's monitoring report. Decode, call
the audit domain, encode; problems are raised and mapped in one place."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from audit.chain import ScanAbandoned
from audit.entries import vector_from_entry
from audit.log import DecisionLog, LogEntry, verify_log
from audit.monitoring import monitoring_report
from audit.replay import ReplayPart, replay_decision
from creditrisk.v1 import audit_pb2, audit_pb2_grpc, common_pb2
from features.catalog import feature_names
from models.decisions import RelatedPartyRef
from models.registry import ModelNotFoundError
from records.pseudonym import Pseudonymiser, is_person_key
from records.store import RecordStore
from service.codec import (
    GRADE_VALUES,
    PURPOSE_VALUES,
    SEVERITY_VALUES,
    evidence_message,
    related_party_message,
    subject_query,
)
from service.problems import CallEnded, InvalidRequest, NotFound, NotReady
from service.scoring import subject_identity

__all__ = ["AuditServicer"]

_CHANNELS = {
    "Score": audit_pb2.DECISION_CHANNEL_SCORE,
    "ScoreStream": audit_pb2.DECISION_CHANNEL_SCORE_STREAM,
    "GetWarnings": audit_pb2.DECISION_CHANNEL_WARNINGS,
    "batch": audit_pb2.DECISION_CHANNEL_BATCH,
    "monitoring": audit_pb2.DECISION_CHANNEL_MONITORING,
}
_PROBLEMS = {  # audit.verify's reasons (plain words) -> the contract's codes, first match
    "does not match the anchor": audit_pb2.CHAIN_PROBLEM_FORGED,
    "does not match the head file": audit_pb2.CHAIN_PROBLEM_TRUNCATED,
    "head file malformed": audit_pb2.CHAIN_PROBLEM_MALFORMED,
    "head file missing": audit_pb2.CHAIN_PROBLEM_TRUNCATED,
    "segment missing": audit_pb2.CHAIN_PROBLEM_TRUNCATED,
    "log directory missing": audit_pb2.CHAIN_PROBLEM_TRUNCATED,
    "hash mismatch": audit_pb2.CHAIN_PROBLEM_HASH_MISMATCH,
    "previous hash": audit_pb2.CHAIN_PROBLEM_BROKEN_LINK,
    "sequence gap": audit_pb2.CHAIN_PROBLEM_SEQUENCE_GAP,
    "out of order": audit_pb2.CHAIN_PROBLEM_OUT_OF_ORDER,
    "truncated": audit_pb2.CHAIN_PROBLEM_TRUNCATED,
    "malformed": audit_pb2.CHAIN_PROBLEM_MALFORMED,
    "forged": audit_pb2.CHAIN_PROBLEM_FORGED,
}
_MAX_LIST = 100_000


def _stamp(text: str) -> timestamp_pb2.Timestamp:
    moment = datetime.fromisoformat(text)
    return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()), nanos=moment.microsecond * 1000)


def _time(stamp: timestamp_pb2.Timestamp, field: str) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidRequest(field, "out_of_range", f"{field} is not a valid timestamp")
    return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)


def decision_record(entry: LogEntry) -> audit_pb2.DecisionRecord:
    """A log entry as the regulator reads it."""
    body: Mapping[str, Any] = entry.body
    answer = body["answer"]
    vector = vector_from_entry(body)
    record = audit_pb2.DecisionRecord(
        sequence=entry.sequence + 1,  # the contract counts from 1, the log from 0
        decision_id=body["decision_id"],
        decided_at=_stamp(body["time"]),
        client=body["client"],
        channel=_CHANNELS.get(body["method"], audit_pb2.DECISION_CHANNEL_UNSPECIFIED),
        request_id=body["request_id"],
        purpose=PURPOSE_VALUES.get(body["purpose"], common_pb2.PURPOSE_UNSPECIFIED),
        authorization_id=body["authorization_id"],
        subject_kind=common_pb2.SUBJECT_KIND_ENTITY
        if body["subject"]["type"] == "entity"
        else common_pb2.SUBJECT_KIND_PERSON,
        subject_key=body["subject"]["key"],
        model_version=body["model"]["version"],
        model_hash=body["model"]["model_sha256"],
        catalog_hash=body["model"]["catalog_hash"],
        warning_rules_version=body["warning_rules_version"],
        features=[
            audit_pb2.FeatureValue(name=name, value=float(value))
            for name, value in zip(feature_names(), vector, strict=False)
        ],
        features_as_of=body["features"]["as_of"],
        score=answer["score"],
        probability_of_default=answer["probability_of_default"],
        grade=GRADE_VALUES[answer["grade"]],
        thin_file=answer["thin_file"],
        explain=answer["reasons"] is not None,
        previous_hash=entry.previous_hash,
        hash=entry.hash,
    )
    for reason in answer["reasons"] or ():
        record.reasons.add(
            code=reason["code"],
            feature=reason["feature"],
            value=reason["value"],
            contribution=reason["contribution"],
        )
    for flag in answer["warnings"]:
        warning = record.warnings.add(
            code=flag["code"], severity=SEVERITY_VALUES[flag["severity"]], since=flag["since"]
        )
        warning.evidence.extend(
            evidence_message(
                item["record"],
                item["kind"],
                item["date"] or "",
                item["amount"],
                item["days_past_due"],
            )
            for item in flag["evidence"]
        )
        if flag["via"] is not None:
            key = flag["via"]["subject"]
            via = RelatedPartyRef(
                flag["via"]["role"], "person" if is_person_key(key) else "entity", key
            )
            warning.via.CopyFrom(related_party_message(via, None))
    return record


def _replay_part(part: ReplayPart) -> audit_pb2.Replay:
    if part.unavailable is not None:
        return audit_pb2.Replay(
            outcome=audit_pb2.REPLAY_OUTCOME_UNAVAILABLE, message=part.unavailable
        )
    return audit_pb2.Replay(
        outcome=audit_pb2.REPLAY_OUTCOME_MATCH if part.ok else audit_pb2.REPLAY_OUTCOME_DIFFERS,
        differences=[
            audit_pb2.FieldDifference(field=d.field, recorded=d.recorded, replayed=d.replayed)
            for d in part.differences
        ],
        message="bit-exact" if part.ok else f"{len(part.differences)} field(s) differ",
    )


class AuditServicer(audit_pb2_grpc.AuditServicer):
    def __init__(
        self,
        data_dir: Path,
        *,
        home_province: str,
        retention_years: int,
        log_directory: Path | None = None,
        fairness_by_gender: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.log_directory = log_directory or data_dir / "audit"
        self.fairness_by_gender = fairness_by_gender
        self.home_province = home_province
        self.retention_years = retention_years
        self._log: DecisionLog | None = None
        self._store: RecordStore | None = None
        self._pseudonymiser: Pseudonymiser | None = None

    def attach(self, log: DecisionLog, store: RecordStore, pseudonymiser: Pseudonymiser) -> None:
        """Start answering from the service's log and store (until then: UNAVAILABLE)."""
        self._log, self._store, self._pseudonymiser = log, store, pseudonymiser

    def _subject_filter(self, subject: common_pb2.Subject) -> str | None:
        """The subject key to list (None: every subject); a malformed identifier is an
        INVALID_ARGUMENT naming the field, as for Score."""
        if subject.WhichOneof("id") is None:
            return None
        if self._pseudonymiser is None:
            raise NotReady("the service is loading; retry shortly")
        today = datetime.now(UTC).date()
        return subject_identity(subject_query(subject), self._pseudonymiser, today)[1]

    @property
    def log(self) -> DecisionLog:
        if self._log is None:
            raise NotReady("the service is loading; retry shortly")
        return self._log

    def store(self) -> RecordStore:
        """A cursor on the service's store for this call's thread."""
        if self._store is None:
            raise NotReady("the service is loading; retry shortly")
        return self._store.cursor()

    def _entry(self, decision_id: str) -> LogEntry:
        if not decision_id or len(decision_id) > 64 or not decision_id.isprintable():
            raise InvalidRequest("decision_id", "malformed", "decision_id is not a decision id")
        found = self.log.get(decision_id)
        if found is None:
            raise NotFound("no decision with that id in the log")
        return found

    def GetDecision(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetDecisionRequest, context: grpc.ServicerContext
    ) -> audit_pb2.DecisionRecord:
        return decision_record(self._entry(request.decision_id))

    def ListDecisions(  # noqa: N802
        self, request: audit_pb2.ListDecisionsRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.DecisionRecord]:
        start = _time(request.from_time, "from_time")
        end = _time(request.to_time, "to_time")
        if request.limit < 0:
            raise InvalidRequest("limit", "out_of_range", "limit must not be negative")
        limit = request.limit or _MAX_LIST
        grade = {v: k for k, v in GRADE_VALUES.items()}.get(request.grade)
        sent = 0
        wanted = self._subject_filter(request.subject)
        # Contract sequences count from 1: entries after N are the log's from N on.
        # A filter that matches little reads the whole log before it sends anything:
        # the scan stops when the call ends.
        scan = self.log.entries(max(request.after_sequence, 0), wanted=context.is_active)
        try:
            for entry in scan:
                body = entry.body
                moment = datetime.fromisoformat(body["time"])
                if (start and moment < start) or (end and moment >= end):
                    continue
                if request.client and body["client"] != request.client:
                    continue
                if request.model_version and body["model"]["version"] != request.model_version:
                    continue
                if grade and body["answer"]["grade"] != grade:
                    continue
                if request.warning_code and not any(
                    w["code"] == request.warning_code for w in body["answer"]["warnings"]
                ):
                    continue
                if wanted is not None and body["subject"]["key"] != wanted:
                    continue
                yield decision_record(entry)
                sent += 1
                if sent >= limit:
                    return
        except ScanAbandoned:
            raise CallEnded("the call ended before the log was scanned to its end") from None

    def ReplayDecision(  # noqa: N802
        self, request: audit_pb2.ReplayDecisionRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ReplayResult:
        entry = self._entry(request.decision_id)
        try:
            with self.store() as store:
                report = replay_decision(
                    entry.body,
                    data_dir=self.data_dir,
                    store=store,
                    home_province=self.home_province,
                    retention_years=self.retention_years,
                )
        except ModelNotFoundError:
            unavailable = audit_pb2.Replay(
                outcome=audit_pb2.REPLAY_OUTCOME_UNAVAILABLE,
                message="the recorded model version is not in the registry",
            )
            return audit_pb2.ReplayResult(
                decision_id=request.decision_id,
                model_version=entry.body["model"]["version"],
                from_recorded_features=unavailable,
                from_records_store=unavailable,
            )
        return audit_pb2.ReplayResult(
            decision_id=report.decision_id,
            model_version=report.model_version,
            from_recorded_features=_replay_part(report.from_recorded_features),
            from_records_store=_replay_part(report.from_records_store),
        )

    def VerifyLog(  # noqa: N802
        self, request: audit_pb2.VerifyLogRequest, context: grpc.ServicerContext
    ) -> audit_pb2.VerifyResult:
        try:
            result = verify_log(
                self.log.directory,
                from_time=_time(request.from_time, "from_time"),
                to_time=_time(request.to_time, "to_time"),
                wanted=context.is_active,  # a whole log takes minutes: stop if nobody waits
            )
        except ScanAbandoned:
            raise CallEnded("the call ended before the log was walked to its end") from None
        answer = audit_pb2.VerifyResult(intact=result.ok, entries_checked=result.entries)
        if not result.ok:
            reason = result.reason or ""
            problem = next(
                (code for text, code in _PROBLEMS.items() if text in reason),
                audit_pb2.CHAIN_PROBLEM_UNSPECIFIED,
            )
            answer.first_broken.CopyFrom(
                audit_pb2.BrokenEntry(
                    sequence=(result.first_bad_sequence or 0) + 1,
                    segment=result.segment or "",
                    offset=result.line or 0,
                    problem=problem,
                    detail=reason,
                )
            )
        return answer

    def GetModelReport(  # noqa: N802
        self, request: audit_pb2.ModelReportRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ModelReport:
        version = request.model_version or None
        if version is not None and (len(version) > 64 or not version.isprintable()):
            raise InvalidRequest("model_version", "malformed", "not a model version")
        start = _time(request.from_time, "from_time")
        end = _time(request.to_time, "to_time")
        if start and end and end <= start:
            raise InvalidRequest("to_time", "out_of_range", "to_time must follow from_time")
        generated = timestamp_pb2.Timestamp()
        generated.GetCurrentTime()
        try:
            if self._store is None:  # still loading: no outcomes to join yet
                report = monitoring_report(
                    self.data_dir,
                    self.log_directory,
                    version=version,
                    from_time=start,
                    to_time=end,
                    outcome_note="the service is loading its records store",
                    by_gender=self.fairness_by_gender,
                    generated_at=generated.ToDatetime(UTC),
                )
            else:
                with self.store() as store:
                    report = monitoring_report(
                        self.data_dir,
                        self.log_directory,
                        version=version,
                        from_time=start,
                        to_time=end,
                        store=store,
                        by_gender=self.fairness_by_gender,
                        generated_at=generated.ToDatetime(UTC),
                    )
        except ModelNotFoundError:
            raise NotFound("no registered model of that version") from None
        return audit_pb2.ModelReport(
            model_version=report["model_version"],
            generated_at=generated,
            report_json=json.dumps(report, sort_keys=True, allow_nan=False),
        )
