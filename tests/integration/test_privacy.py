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
