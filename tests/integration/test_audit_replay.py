"""Replaying a logged decision: bit-exact on an untouched store; a record altered in place
after the decision, or a tampered answer, is named."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServiceData

from audit.entries import decision_entry
from audit.replay import replay_decision
from service.server import ServiceRuntime, load_runtime
from settings import load_settings


@pytest.fixture(scope="module")
def runtime(
    service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceRuntime]:
    data_dir = tmp_path_factory.mktemp("replay") / "data"
    shutil.copytree(service_data.pristine, data_dir)
    loaded = load_runtime(load_settings(data_dir=data_dir), record_inquiries=False)
    yield loaded
    loaded.close()


def _entry(runtime: ServiceRuntime, key: str, *, reasons: bool = True) -> dict[str, Any]:
    found = runtime.book.lookup(key)
    assert found is not None
    if reasons:
        found = runtime.book.explained(found)
    return decision_entry(
        decision_id="01M8BFWFS2AF92V8W87JXZ4FJ5",
        decided_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
        kind="online",
        method="Score",
        client="demo-lender",
        purpose="loan_approval",
        authorization_id="",
        request_id="",
        subject=found,
        model=runtime.model,
        warning_rules_version=runtime.book.warning_rules_version,
        reasons_given=reasons,
    )


def _replay(runtime: ServiceRuntime, entry: dict[str, Any]) -> Any:
    return replay_decision(entry, data_dir=Path(runtime.store.path).parent, store=runtime.store)


def _public_record_subject(runtime: ServiceRuntime) -> tuple[str, str]:
    """An entity with a flag citing a public record, and that record's id."""
    for key in runtime.features.subject_keys():
        found = runtime.book.lookup(key)
        if found is None or found.subject_type != "entity":
            continue
        for flag in found.warnings:
            for item in flag.evidence:
                if item.table == "public_record" and flag.via is None:
                    return key, item.record.split(":", 2)[2]
    raise AssertionError("the demo province has public-record flags")


def test_replay_is_bit_exact_on_an_untouched_store(runtime: ServiceRuntime) -> None:
    keys = runtime.features.subject_keys()
    for key in [*keys[:5], *keys[-5:], _public_record_subject(runtime)[0]]:
        report = _replay(runtime, _entry(runtime, key))
        assert report.ok, report.to_dict()
        assert set(report.matches) >= {
            "score",
            "probability_of_default",
            "grade",
            "reasons",
            "warnings",
            "features",
            "model_file",
        }


def test_a_tampered_answer_is_named(runtime: ServiceRuntime) -> None:
    entry = _entry(runtime, runtime.features.subject_keys()[0])
    entry["answer"]["score"] += 1
    entry["answer"]["probability_of_default"] = (
        entry["answer"]["probability_of_default"] * (1 + 1e-15) or 1e-300
    )
    report = _replay(runtime, entry)
    assert not report.ok
    assert report.differing == ["probability_of_default", "score"]


def test_a_record_changed_after_the_decision_is_named(runtime: ServiceRuntime) -> None:
    key, record_id = _public_record_subject(runtime)
    entry = _entry(runtime, key)
    runtime.store.run(
        "UPDATE public_record SET event_date = event_date - INTERVAL 100 DAY "
        "WHERE subject_key = ? AND record_id = ?",
        [key, record_id],
    )
    report = _replay(runtime, entry)
    assert not report.ok
    assert report.matches["score"] and report.matches["reasons"], "the model part still holds"
    assert not report.matches["features"]
    assert not report.from_records_store.ok and report.from_recorded_features.ok
    assert any(name.startswith("pub_") for name in report.differing_features)
    assert not report.matches["warnings"]
