"""Traffic with known resident identity numbers, then a search of everything the service
wrote or said: log lines, metrics, error messages, the decision log, the inquiries and
quarantine in the store, the clients file. No raw number may appear anywhere."""

from __future__ import annotations

import io
import logging
import urllib.request
from pathlib import Path

import grpc
from conftest import ServiceData, bearer, make_resident_id

from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc
from records.runtime import make_pseudonymiser
from service.logs import configure_logging
from service.server import CreditRiskServer
from settings import load_settings


def test_no_resident_id_leaves_the_service(
    live_server: CreditRiskServer, service_data: ServiceData, channel: grpc.Channel
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    pseudonymiser = make_pseudonymiser(load_settings(data_dir=service_data.data_dir))
    known = [
        rid
        for rid in service_data.frames["natural_person"]["resident_id"].to_list()[:400]
        if runtime.book.lookup(pseudonymiser.person_key(rid)) is not None
    ][:25]
    assert len(known) >= 10
    unknown = [make_resident_id(n, birth="19700101") for n in range(5)]
    stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
    lender = bearer(service_data.keys["lender"])
    said: list[str] = []
    sink = io.StringIO()
    handler = configure_logging("INFO", sink)
    try:
        for i, rid in enumerate(known + unknown):
            subject = common_pb2.Subject(resident_id=rid)
            for consent in ("", f"consent-{i}"):  # without consent: PERMISSION_DENIED
                for call in (
                    lambda s=subject, c=consent: stub.Score(
                        credit_risk_pb2.ScoreRequest(
                            subject=s,
                            purpose=common_pb2.PURPOSE_LOAN_APPROVAL,
                            authorization_id=c,
                            explain=True,
                        ),
                        metadata=lender,
                    ),
                    lambda s=subject, c=consent: stub.GetWarnings(
                        credit_risk_pb2.WarningsRequest(
                            subject=s,
                            purpose=common_pb2.PURPOSE_LOAN_APPROVAL,
                            authorization_id=c,
                        ),
                        metadata=lender,
                    ),
                ):
                    try:
                        said.append(str(call()))
                    except grpc.RpcError as err:
                        said.append(f"{err.code()} {err.details()} {err.trailing_metadata()}")
        # A malformed number: its error names the rule, not the number.
        broken = known[0][:-1] + ("0" if known[0][-1] != "0" else "1")
        try:
            stub.Score(
                credit_risk_pb2.ScoreRequest(
                    subject=common_pb2.Subject(resident_id=broken),
                    purpose=common_pb2.PURPOSE_LOAN_APPROVAL,
                    authorization_id="c",
                ),
                metadata=lender,
            )
        except grpc.RpcError as err:
            said.append(f"{err.details()} {err.trailing_metadata()}")
        assert runtime.inquiries is not None
        runtime.inquiries.flush()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{live_server.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    data_dir = Path(service_data.data_dir)
    written = [p.read_bytes().decode("utf-8", "replace") for p in (data_dir / "audit").glob("*")]
    written.append((data_dir / "clients.json").read_text())
    with runtime.store.cursor() as cursor:
        stored = [
            str(row)
            for table in ("credit_inquiry", "quarantine", "ingestion")
            for row in cursor.query(f"SELECT * FROM {table}")
        ]
    # The traffic reached every place searched: the persons are there, as pseudonyms.
    pseudonym = pseudonymiser.person_key(known[0])
    assert pseudonym in "\n".join(stored), "the inquiries were recorded"
    assert pseudonym in "\n".join(written), "the decisions were logged"
    haystacks = {
        "logs": sink.getvalue(),
        "answers and errors": "\n".join(said),
        "metrics": metrics,
        "decision log and clients file": "\n".join(written),
        "store (inquiries, quarantine, ingestion)": "\n".join(stored),
    }
    for rid in [*known, *unknown, broken]:
        for where, text in haystacks.items():
            assert rid not in text, f"a resident id appears in {where}"


def test_no_resident_id_leaves_the_monitoring_paths(
    service_data: ServiceData, tmp_path: Path
) -> None:
    """Records reported with resident ids (stored, rejected, for unknown persons), persons
    watched (with and without consent) and their alerts: the numbers appear nowhere."""
    import shutil

    from conftest import service_settings

    from creditrisk.v1 import records_pb2, records_pb2_grpc

    data_dir = tmp_path / "data"
    shutil.copytree(service_data.pristine, data_dir)
    server = CreditRiskServer(service_settings(data_dir))
    server.start()
    sink = io.StringIO()
    handler = configure_logging("INFO", sink)
    said: list[str] = []
    try:
        server.load_and_serve()
        runtime = server.runtime
        assert runtime is not None and runtime.book.as_of is not None
        as_of = runtime.book.as_of.isoformat()
        pseudonymiser = runtime.scorer.pseudonymiser
        known = [
            rid
            for rid in service_data.frames["natural_person"]["resident_id"].to_list()[:300]
            if runtime.book.lookup(pseudonymiser.person_key(rid)) is not None
        ][:6]
        unknown = make_resident_id(7, birth="19700101")
        broken = known[1][:-1] + ("0" if known[1][-1] != "0" else "1")
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            credit = credit_risk_pb2_grpc.CreditRiskStub(channel)
            lender = bearer(service_data.keys["lender"])
            for i, rid in enumerate([*known, unknown, broken]):
                for consent in ("", f"consent-{i}"):
                    try:
                        said.append(
                            str(
                                credit.Watch(
                                    credit_risk_pb2.WatchlistRequest(
                                        subjects=[
                                            credit_risk_pb2.WatchedSubject(
                                                subject=common_pb2.Subject(resident_id=rid),
                                                reference=f"loan-{i}",
                                                authorization_id=consent,
                                            )
                                        ]
                                    ),
                                    metadata=lender,
                                )
                            )
                        )
                    except grpc.RpcError as err:
                        said.append(f"{err.code()} {err.details()} {err.trailing_metadata()}")
            alerts = credit.WatchAlerts(
                credit_risk_pb2.WatchRequest(after_alert_id=0), metadata=lender
            )

            def row(rid: str, n: int) -> records_pb2.Row:
                return records_pb2.Row(
                    fields={
                        "record_id": f"PRIV-{n}",
                        "kind": "dishonest_debtor",
                        "subject_type": "person",
                        "subject_id": rid,
                        "event_date": as_of,
                        "amount": "1000.00",
                        "status": "active",
                        "reported_at": f"{as_of}T08:00:00",
                    },
                    reference=f"line-{n}",
                )

            summary = records_pb2_grpc.RecordsStub(channel).SubmitRecords(
                iter(
                    [
                        records_pb2.RecordBatch(
                            table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                            rows=[row(known[0], 1), row(unknown, 2), row(broken, 3)],
                        )
                    ]
                ),
                metadata=bearer(service_data.keys["reporter"]),
            )
            said.append(str(summary))
            assert (summary.accepted, summary.rejected) == (1, 2)
            for alert in alerts:
                said.append(str(alert))
                if alert.kind == credit_risk_pb2.ALERT_KIND_RAISED:
                    break
            alerts.cancel()
        with runtime.store.cursor() as cursor:
            stored = [
                str(row)
                for table in ("watchlist", "alert", "public_record", "quarantine", "ingestion")
                for row in cursor.query(f"SELECT * FROM {table}")
            ]
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        server.stop(1)
    written = [p.read_bytes().decode("utf-8", "replace") for p in (data_dir / "audit").glob("*")]
    pseudonym = pseudonymiser.person_key(known[0])
    assert pseudonym in "\n".join(stored) and pseudonym in "\n".join(said), "the traffic got there"
    haystacks = {
        "logs": sink.getvalue(),
        "answers, alerts and errors": "\n".join(said),
        "decision log": "\n".join(written),
        "store (watchlists, alerts, records, quarantine, ingestion)": "\n".join(stored),
    }
    for rid in [*known, unknown, broken]:
        for where, text in haystacks.items():
            assert rid not in text, f"a resident id appears in {where}"
