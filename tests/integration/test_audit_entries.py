"""A decision's log entry holds what a replay needs, exactly, and nothing identifying."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from conftest import ServiceData

from audit.entries import decision_entry, vector_from_entry
from records.runtime import make_pseudonymiser
from service.server import CreditRiskServer
from settings import load_settings


def test_entry_round_trips_the_exact_vector_and_answer(
    live_server: CreditRiskServer, service_data: ServiceData
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    pseudonymiser = make_pseudonymiser(load_settings(data_dir=service_data.data_dir))
    persons = [
        (rid, pseudonymiser.person_key(rid))
        for rid in service_data.frames["natural_person"]["resident_id"].to_list()[:300]
    ]
    person = next((rid, key) for rid, key in persons if runtime.book.lookup(key))
    flagged = next(
        key
        for key in runtime.features.subject_keys()
        if runtime.book.lookup(key).warnings  # type: ignore[union-attr]
    )
    for key in (flagged, person[1]):
        found = runtime.book.explained(runtime.book.lookup(key))  # type: ignore[arg-type]
        entry = decision_entry(
            decision_id="01M8BFWFS2AF92V8W87JXZ4FJ5",
            decided_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
            kind="online",
            method="Score",
            client="demo-lender",
            purpose="loan_approval",
            authorization_id="consent-1",
            request_id="r-1",
            subject=found,
            model=runtime.model,
            warning_rules_version=runtime.book.warning_rules_version,
            reasons_given=True,
        )
        text = json.dumps(entry, allow_nan=False, sort_keys=True)  # canonical JSON works
        back = json.loads(text)
        assert vector_from_entry(back).tobytes() == found.features.tobytes()
        assert back["answer"]["probability_of_default"] == found.decision.probability_of_default
        assert [r["code"] for r in back["answer"]["reasons"]] == [
            r.code for r in found.decision.reasons
        ]
        assert [w["code"] for w in back["answer"]["warnings"]] == [w.code for w in found.warnings]
        assert back["subject"]["key"] == key
        assert back["model"]["version"] == runtime.model.version
        assert person[0] not in text, "a raw resident id never enters the log"
