"""Credit monitoring through a real server on its own copy of the demo store: records
reported over SubmitRecords, refreshed into the served decisions, and alerts streamed to the
platforms that watch the subjects (and to no one else), resumable by alert id."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
from conftest import ServiceData, bearer, make_uscc, rpc_details, service_settings

from creditrisk.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)
from service.clients import ClientRegistry
from service.server import CreditRiskServer
from settings import MonitoringSettings


class Monitored:
    def __init__(self, server: CreditRiskServer, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.credit = credit_risk_pb2_grpc.CreditRiskStub(self.channel)
        self.records = records_pb2_grpc.RecordsStub(self.channel)

    def meta(self, who: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.keys[who])


@pytest.fixture(scope="module")
def monitored(
    service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitored]:
    data_dir = tmp_path_factory.mktemp("monitoring") / "data"
    shutil.copytree(service_data.pristine, data_dir)
    settings = service_settings(data_dir, max_stream_items=8).model_copy(
        update={
            "monitoring": MonitoringSettings(
                max_batch_rows=50, max_watch_subjects=40, max_watch_streams=3
            )
        }
    )
    registry = ClientRegistry(settings.clients_path)
    keys = {
        "lender": service_data.keys["lender"],
        "reporter": service_data.keys["reporter"],
        "agency": service_data.keys["agency"],
        "regulator": service_data.keys["regulator"],
    }
    keys["other-lender"] = registry.add("other-lender", "lender")[1]
    keys["court"] = registry.add("court-33", "reporter")[1]  # no registry tables
    server = CreditRiskServer(settings)
    server.start()
    server.load_and_serve()
    found = Monitored(server, keys)
    yield found
    found.channel.close()
    server.stop(1)


def _as_of(monitored: Monitored) -> date:
    runtime = monitored.server.runtime
    assert runtime is not None and runtime.book.as_of is not None
    return runtime.book.as_of


def _codes(monitored: Monitored, key: str) -> set[str]:
    runtime = monitored.server.runtime
    assert runtime is not None
    found = runtime.book.lookup(key)
    assert found is not None
    return {flag.code for flag in found.warnings}


def _clean_companies(
    monitored: Monitored, frames: dict[str, pl.DataFrame]
) -> list[tuple[str, str]]:
    """(company USCC, legal representative's resident id) of companies whose current legal
    representative has no dishonest-debtor listing, nor the company a flag through one."""
    as_of = _as_of(monitored)
    relations = frames["relation"].filter(
        (pl.col("role") == "legal_representative")
        & (pl.col("valid_from").cast(pl.Date) <= as_of)
        & (pl.col("valid_to").is_null() | (pl.col("valid_to").cast(pl.Date) > as_of))
        & (pl.col("reported_at").cast(pl.Datetime).dt.date() <= as_of)
    )
    listed = set(frames["public_record"].filter(pl.col("kind") == "dishonest_debtor")["subject_id"])
    pairs = []
    for uscc, resident_id in relations.select("uscc", "resident_id").iter_rows():
        if resident_id in listed or uscc in {p[0] for p in pairs}:
            continue
        runtime = monitored.server.runtime
        assert runtime is not None
        if runtime.book.lookup(uscc) is None:
            continue
        if not _codes(monitored, uscc) & {"W_RP_LEGAL_REP_DISHONEST", "W_DISHONEST_DEBTOR"}:
            pairs.append((uscc, resident_id))
    assert len(pairs) >= 4, "the demo province should have clean companies"
    return pairs


def _watch(monitored: Monitored, who: str, *usccs: str, reference: str = "") -> None:
    answer = monitored.credit.Watch(
        credit_risk_pb2.WatchlistRequest(
            subjects=[
                credit_risk_pb2.WatchedSubject(
                    subject=common_pb2.Subject(uscc=uscc), reference=reference or f"loan-{uscc}"
                )
                for uscc in usccs
            ]
        ),
        metadata=monitored.meta(who),
    )
    assert answer.watched >= len(usccs)


def _dishonest(resident_id: str, record_id: str, as_of: date) -> records_pb2.Row:
    return records_pb2.Row(
        fields={
            "record_id": record_id,
            "kind": "dishonest_debtor",
            "subject_type": "person",
            "subject_id": resident_id,
            "event_date": (as_of - timedelta(days=5)).isoformat(),
            "amount": "81234.50",
            "status": "active",
            "reported_at": f"{as_of.isoformat()}T10:00:00",
        },
        reference=f"line-{record_id}",
    )


class AlertReader:
    """A WatchAlerts stream read by a thread into a queue."""

    def __init__(self, monitored: Monitored, who: str, after: int | None = None) -> None:
        request = credit_risk_pb2.WatchRequest()
        if after is not None:
            request.after_alert_id = after
        self.call = monitored.credit.WatchAlerts(request, metadata=monitored.meta(who))
        self.received: queue.Queue[tuple[float, credit_risk_pb2.Alert]] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for alert in self.call:
                self.received.put((time.monotonic(), alert))
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.CANCELLED:
                self.error = err

    def take(self, timeout: float) -> tuple[float, credit_risk_pb2.Alert]:
        return self.received.get(timeout=timeout)

    def drain(self, wait: float) -> list[credit_risk_pb2.Alert]:
        out = []
        deadline = time.monotonic() + wait
        while True:
            try:
                out.append(self.received.get(timeout=max(0.0, deadline - time.monotonic()))[1])
            except queue.Empty:
                return out

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)
        assert self.error is None, self.error


def test_a_legal_representatives_new_listing_alerts_the_watcher_of_the_company_only(
    monitored: Monitored, service_data: ServiceData
) -> None:
    (company, representative), (other, _), *_ = _clean_companies(monitored, service_data.frames)
    as_of = _as_of(monitored)
    _watch(monitored, "lender", company, reference="loan-0001")
    _watch(monitored, "other-lender", other)
    watcher = AlertReader(monitored, "lender", after=0)
    bystander = AlertReader(monitored, "other-lender", after=0)
    try:
        bad = records_pb2.Row(
            fields={**_dishonest(representative, "T-BAD-1", as_of).fields, "subject_id": "123"},
            reference="line-bad",
        )
        summary = monitored.records.SubmitRecords(
            iter(
                [
                    records_pb2.RecordBatch(
                        batch_id="court-batch-1",
                        table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                        rows=[bad, _dishonest(representative, "T-DD-1", as_of)],
                    )
                ]
            ),
            metadata=monitored.meta("reporter"),
        )
        acknowledged = time.monotonic()
        assert (summary.read, summary.accepted, summary.rejected) == (2, 1, 1)
        (rejection,) = summary.batches[0].rejections
        assert (rejection.row, rejection.reference, rejection.field) == (
            0,
            "line-bad",
            "subject_id",
        )
        assert rejection.reason and rejection.detail
        assert summary.subjects_refreshed >= 1

        received_at, alert = watcher.take(timeout=10)
        assert received_at - acknowledged < 2.0, "the alert must reach the watcher within 2 s"
        assert alert.kind == credit_risk_pb2.ALERT_KIND_RAISED
        assert alert.subject.uscc == company and alert.watch_reference == "loan-0001"
        assert alert.warning.code == "W_RP_LEGAL_REP_DISHONEST"
        assert alert.via.role == common_pb2.RELATED_PARTY_ROLE_LEGAL_REPRESENTATIVE
        assert alert.via.kind == common_pb2.SUBJECT_KIND_PERSON
        assert alert.via.pseudonym and representative not in str(alert)
        # The listing, and the relation that makes it the company's concern.
        listing = {e.record: e for e in alert.warning.evidence}["T-DD-1"]
        assert (listing.table, listing.amount) == ("public_record", "81234.50")
        assert {e.table for e in alert.warning.evidence} == {"public_record", "relation"}
        assert alert.decision_id and alert.alert_id >= 1

        # A Score a second after the acknowledgement sees the new flag.
        time.sleep(max(0.0, acknowledged + 1.0 - time.monotonic()))
        scored = monitored.credit.Score(
            credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(uscc=company),
                purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
            ),
            metadata=monitored.meta("agency"),
        )
        assert "W_RP_LEGAL_REP_DISHONEST" in {w.code for w in scored.warnings}
        # Its refreshed decision holds its own feature row, not a view that would keep the
        # refresh's whole matrix alive (the book would grow with every refresh).
        refreshed = monitored.server.runtime.book.lookup(company)  # type: ignore[union-attr]
        assert refreshed is not None and refreshed.features.base is None

        assert bystander.drain(wait=1.0) == []

        # What the watcher was told is a logged decision a regulator replays bit-exactly,
        # from the recorded features and from the records store (the new listing included).
        audit = audit_pb2_grpc.AuditStub(monitored.channel)
        record = audit.GetDecision(
            audit_pb2.GetDecisionRequest(decision_id=alert.decision_id),
            metadata=monitored.meta("regulator"),
        )
        assert record.channel == audit_pb2.DECISION_CHANNEL_MONITORING
        assert record.client == "demo-lender"
        assert "W_RP_LEGAL_REP_DISHONEST" in {w.code for w in record.warnings}
        replay = audit.ReplayDecision(
            audit_pb2.ReplayDecisionRequest(decision_id=alert.decision_id),
            metadata=monitored.meta("regulator"),
        )
        for part in (replay.from_recorded_features, replay.from_records_store):
            assert part.outcome == audit_pb2.REPLAY_OUTCOME_MATCH, part
    finally:
        watcher.close()
        bystander.close()


def test_alerts_resume_after_the_last_acknowledged_id_nothing_lost_nothing_twice(
    monitored: Monitored, service_data: ServiceData
) -> None:
    pairs = _clean_companies(monitored, service_data.frames)
    as_of = _as_of(monitored)
    refresher = monitored.server.runtime.refresher  # type: ignore[union-attr]
    (first, rep_1), (second, rep_2) = pairs[-2:]
    _watch(monitored, "lender", first, second)
    reader = AlertReader(monitored, "lender")  # from now on
    try:
        _submit(monitored, [_dishonest(rep_1, "T-RS-1", as_of)])
        refresher.wait_idle(10)
        seen = reader.drain(wait=1.0)
    finally:
        reader.close()
    assert first in {a.subject.uscc for a in seen}
    last = seen[-1].alert_id
    # Disconnected: a change happens meanwhile.
    _submit(monitored, [_dishonest(rep_2, "T-RS-2", as_of)])
    refresher.wait_idle(10)
    resumed = AlertReader(monitored, "lender", after=last)
    try:
        missed = resumed.drain(wait=1.5)
    finally:
        resumed.close()
    assert missed and all(a.alert_id > last for a in missed)
    assert second in {a.subject.uscc for a in missed if a.kind == credit_risk_pb2.ALERT_KIND_RAISED}
    assert "T-RS-1" not in str(missed), "nothing of before the resume point again"
    everything = AlertReader(monitored, "lender", after=0)
    try:
        replayed = everything.drain(wait=1.5)
    finally:
        everything.close()
    ids = [a.alert_id for a in replayed]
    assert ids == list(range(1, len(ids) + 1)), "numbered 1, 2, ... for this platform, each once"
    assert [a.SerializeToString() for a in replayed if a.alert_id > last] == [
        a.SerializeToString() for a in missed
    ]
    assert {a.alert_id for a in seen} <= set(ids)


def _submit(monitored: Monitored, rows: list[records_pb2.Row]) -> records_pb2.SubmitSummary:
    return monitored.records.SubmitRecords(
        iter([records_pb2.RecordBatch(table=records_pb2.RECORD_TABLE_PUBLIC_RECORD, rows=rows)]),
        metadata=monitored.meta("reporter"),
    )


def test_resending_a_batch_adds_nothing(monitored: Monitored, service_data: ServiceData) -> None:
    (_, representative), *_ = _clean_companies(monitored, service_data.frames)
    row = _dishonest(representative, "T-DUP-1", _as_of(monitored))
    first = _submit(monitored, [row])
    again = _submit(monitored, [row])
    assert (first.accepted, again.accepted, again.duplicate) == (1, 0, 1)
    assert again.subjects_refreshed == 0


@pytest.mark.parametrize(
    ("batch", "code", "field"),
    [
        (
            records_pb2.RecordBatch(rows=[records_pb2.Row()]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batches[0].table",
        ),
        (
            records_pb2.RecordBatch(
                table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                rows=[records_pb2.Row(fields={"colour": "red"})],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batches[0].rows[0].fields",
        ),
        (
            records_pb2.RecordBatch(
                table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                rows=[records_pb2.Row(fields={"source": "COURT-33"})],
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
    ],
)
def test_a_batch_that_breaks_the_contract_is_refused_naming_it(
    monitored: Monitored, batch: records_pb2.RecordBatch, code: grpc.StatusCode, field: str | None
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        monitored.records.SubmitRecords(iter([batch]), metadata=monitored.meta("reporter"))
    assert caught.value.code() is code
    if field is not None:
        (violation,) = rpc_details(caught.value)["BadRequest"].field_violations
        assert violation.field == field


def test_watching_checks_each_subject_and_consent(
    monitored: Monitored, service_data: ServiceData
) -> None:
    person = service_data.frames["natural_person"]["resident_id"][0]
    good = service_data.frames["legal_entity"]["uscc"][0]
    cases = [
        (
            credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(uscc="91330000X")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "subjects[1].subject.uscc",
        ),
        (
            credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(resident_id=person)),
            grpc.StatusCode.PERMISSION_DENIED,
            "subjects[1].authorization_id",
        ),
    ]
    for bad, code, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            monitored.credit.Watch(
                credit_risk_pb2.WatchlistRequest(
                    subjects=[
                        credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(uscc=good)),
                        bad,
                    ]
                ),
                metadata=monitored.meta("other-lender"),
            )
        assert caught.value.code() is code
        found = rpc_details(caught.value)
        if "BadRequest" in found:
            assert found["BadRequest"].field_violations[0].field == field
        else:
            assert field in caught.value.details()
        assert person not in caught.value.details()
    consented = monitored.credit.Watch(
        credit_risk_pb2.WatchlistRequest(
            subjects=[
                credit_risk_pb2.WatchedSubject(
                    subject=common_pb2.Subject(resident_id=person), authorization_id="AUTH-1"
                )
            ]
        ),
        metadata=monitored.meta("other-lender"),
    )
    assert consented.changed == 1
    removed = monitored.credit.Unwatch(
        credit_risk_pb2.WatchlistRequest(
            subjects=[
                credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(resident_id=person))
            ]
        ),
        metadata=monitored.meta("other-lender"),
    )
    assert removed.changed == 1 and removed.watched == consented.watched - 1


def test_only_lenders_watch_and_only_reporters_submit(monitored: Monitored) -> None:
    for call, who in [
        (
            lambda m: monitored.credit.Watch(credit_risk_pb2.WatchlistRequest(), metadata=m),
            "agency",
        ),
        (
            lambda m: monitored.records.SubmitRecords(iter([]), metadata=m),
            "lender",
        ),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(monitored.meta(who))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_limits_on_batches_streams_and_watchlists(
    monitored: Monitored, service_data: ServiceData
) -> None:
    def code(action: Any) -> grpc.StatusCode:
        try:
            action()
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    table = records_pb2.RECORD_TABLE_PUBLIC_RECORD
    reporter = monitored.meta("reporter")
    too_many_rows = records_pb2.RecordBatch(table=table, rows=[records_pb2.Row()] * 51)
    assert (
        code(lambda: monitored.records.SubmitRecords(iter([too_many_rows]), metadata=reporter))
        is grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    small = records_pb2.RecordBatch(table=table, rows=[records_pb2.Row()])
    assert (
        code(lambda: monitored.records.SubmitRecords(iter([small] * 9), metadata=reporter))
        is grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    usccs = service_data.frames["legal_entity"]["uscc"].unique().to_list()[:41]
    request = credit_risk_pb2.WatchlistRequest(
        subjects=[credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(uscc=u)) for u in usccs]
    )
    lender = monitored.meta("other-lender")
    assert code(lambda: monitored.credit.Watch(request, metadata=lender)) is (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    # Four streams at once where three may be open: one is refused, whichever came last.
    streams = [
        monitored.credit.WatchAlerts(credit_risk_pb2.WatchRequest(), metadata=lender, timeout=3)
        for _ in range(4)
    ]
    codes = sorted(code(lambda s=stream: list(s)).name for stream in streams)
    assert codes == ["DEADLINE_EXCEEDED"] * 3 + ["RESOURCE_EXHAUSTED"]


def test_the_watch_and_alerts_commands(
    monitored: Monitored, service_data: ServiceData, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess

    from test_service_process import BIN

    usccs = service_data.frames["legal_entity"]["uscc"].unique().sort().to_list()[:3]
    env = {**os.environ, "CREDIT_RISK_API_KEY": monitored.keys["lender"]}
    target = ["--target", f"127.0.0.1:{monitored.server.port}"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "credit-risk"), *args, *target],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    good = tmp_path / "portfolio.txt"
    good.write_text(f"# our book\n{usccs[0]},loan-1\n\n{usccs[1]}\n")
    added = run("watch", "add", str(good))
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["subjects"] == 2
    bad = tmp_path / "bad.txt"
    for wrong, code in (("91330106MA2XXXXX0", "INVALID_ARGUMENT"), (make_uscc(999), "NOT_FOUND")):
        bad.write_text(f"{usccs[2]},loan-3\n\n{wrong},loan-4\n")
        refused = run("watch", "add", str(bad))
        assert refused.returncode == 1
        problem = json.loads(refused.stderr)["error"]
        assert (problem["code"], problem["line"]) == (code, 3), "the file line of the bad item"
    removed = run("watch", "remove", str(good))
    assert removed.returncode == 0 and json.loads(removed.stdout)["changed"] == 2
    # A new listing of a watched company: the alerts command prints its alert.
    (company, _), *_ = _clean_companies(monitored, service_data.frames)
    mine = tmp_path / "mine.txt"
    mine.write_text(f"{company},loan-9\n")
    assert run("watch", "add", str(mine)).returncode == 0
    runtime = monitored.server.runtime
    assert runtime is not None
    last = runtime.monitoring.alerts.last_id("demo-lender")
    listing = _dishonest("", "T-CLI-1", _as_of(monitored))
    listing.fields.update({"subject_type": "entity", "subject_id": company})
    _submit(monitored, [listing])
    streamed = run(
        "alerts", "--after", str(last), "--kind", "raised", "--count", "1", "--seconds", "20"
    )
    assert streamed.returncode == 0, streamed.stderr
    (line,) = streamed.stdout.splitlines()
    alert = json.loads(line)
    assert (alert["subject"]["uscc"], alert["watch_reference"]) == (company, "loan-9")
    assert alert["warning"]["code"] == "W_DISHONEST_DEBTOR" and int(alert["alert_id"]) > last


def test_registry_tables_need_a_grant(monitored: Monitored, service_data: ServiceData) -> None:
    """A legal entity's version from any reporter would supersede the registered one: only
    a reporter granted the table may report it; other tables are keyed by the source."""
    entity = service_data.frames["legal_entity"].row(0, named=True)
    row = records_pb2.Row(
        fields={k: str(v) for k, v in entity.items() if v is not None and k not in ("source",)}
        | {"status": "revoked", "status_date": "2026-01-05", "reported_at": "2026-01-06T00:00:00"}
    )
    batch = records_pb2.RecordBatch(table=records_pb2.RECORD_TABLE_LEGAL_ENTITY, rows=[row])
    with pytest.raises(grpc.RpcError) as caught:
        monitored.records.SubmitRecords(iter([batch]), metadata=monitored.meta("court"))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "registry table" in caught.value.details()
    granted = monitored.records.SubmitRecords(iter([batch]), metadata=monitored.meta("reporter"))
    assert granted.read == 1 and granted.rejected + granted.accepted == 1
    own = records_pb2.RecordBatch(
        table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
        rows=[
            _dishonest(
                service_data.frames["natural_person"]["resident_id"][0], "C-1", _as_of(monitored)
            )
        ],
    )
    assert monitored.records.SubmitRecords(iter([own]), metadata=monitored.meta("court")).read == 1
