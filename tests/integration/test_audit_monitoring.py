"""The monitoring report: decisions served through a real server are counted, their scores
and features compared with the training data (PSI), their grades mixed by day and their
groups (region, age band) shown with scores and observed bad rates; as JSON through
Audit.GetModelReport and as a self-contained HTML page through `credit-risk audit report`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import ServiceData, bearer

from audit.monitoring import (
    ServedDecision,
    monitoring_report,
    observed_outcomes,
)
from audit.monitoring_html import render_monitoring_html
from creditrisk.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
)
from features.catalog import feature_names
from features.training import add_months
from models.calibration import calibrator_from_json
from models.registry import CALIBRATOR_FILE, MODEL_FILE, ModelRegistry
from records.runtime import make_pseudonymiser
from records.store import RecordStore
from service.cli import main
from service.server import CreditRiskServer
from settings import load_settings

LOAN = common_pb2.PURPOSE_LOAN_APPROVAL


def _report(audit: Any, regulator: Any, **fields: Any) -> dict[str, Any]:
    answer = audit.GetModelReport(audit_pb2.ModelReportRequest(**fields), metadata=regulator)
    report: dict[str, Any] = json.loads(answer.report_json)
    assert report["model_version"] == answer.model_version
    return report


def _persons(server: CreditRiskServer, data: ServiceData, count: int) -> list[str]:
    assert server.runtime is not None
    pseudonymiser = make_pseudonymiser(load_settings(data_dir=data.data_dir))
    found = []
    for rid in data.frames["natural_person"]["resident_id"].to_list():
        if server.runtime.book.lookup(pseudonymiser.person_key(rid)) is not None:
            found.append(rid)
            if len(found) == count:
                break
    return found


def test_served_decisions_make_the_monitoring_report(
    live_server: CreditRiskServer, service_data: ServiceData, channel: grpc.Channel
) -> None:
    scoring = credit_risk_pb2_grpc.CreditRiskStub(channel)
    audit = audit_pb2_grpc.AuditStub(channel)
    lender = bearer(service_data.keys["lender"])
    regulator = bearer(service_data.keys["regulator"])
    assert live_server.runtime is not None
    entities = [k for k in live_server.runtime.features.subject_keys() if len(k) == 18][:40]
    persons = _persons(live_server, service_data, 20)
    before = _report(audit, regulator)["decisions"]["n"]
    requests = [
        credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(uscc=k), purpose=LOAN)
        for k in entities
    ] + [
        credit_risk_pb2.ScoreRequest(
            subject=common_pb2.Subject(resident_id=rid), purpose=LOAN, authorization_id="c-1"
        )
        for rid in persons
    ]
    answers = list(scoring.ScoreStream(iter(requests), metadata=lender))
    assert len(answers) == 60

    report = _report(audit, regulator)
    assert report["kind"] == "monitoring"
    assert report["decisions"]["n"] == before + 60
    assert report["decisions"]["by_subject_type"]["person"] >= 20
    assert "oot_auc" in report["model"]["evaluation"]
    # Stability: PSI on the score and on every feature, each in a band.
    stability = report["stability"]
    assert report["reference_profile"]["available"] and stability["available"]
    assert stability["score"]["band"] in ("stable", "moderate", "significant")
    assert {row["feature"] for row in stability["features"]} == set(feature_names())
    assert sum(stability["features_by_band"].values()) == len(feature_names())
    assert sum(report["score_distribution"]["served"]) == report["decisions"]["n"]
    # Grade mix by day: today's decisions are there.
    today = datetime.now(UTC).date().isoformat()
    days = {row["day"]: row for row in report["grade_mix"]["days"]}
    assert days[today]["n"] >= 60 and sum(days[today]["counts"].values()) == days[today]["n"]
    # Fairness by region (entities from their USCC, persons recorded at decision time) and
    # by age band (persons only); no gender unless configured.
    fairness = report["fairness"]
    regions = {row["group"]: row for row in fairness["by_region"]}
    assert sum(row["n"] for row in regions.values()) == report["decisions"]["n"]
    assert {rid[:2] for rid in persons} | {k[2:4] for k in entities} <= set(regions)
    bands = {row["group"] for row in fairness["by_age_band"]}
    assert bands and all(b == "70+" or b == "under 18" or "-" in b for b in bands)
    assert (
        sum(row["n"] for row in fairness["by_age_band"])
        == report["decisions"]["by_subject_type"]["person"]
    )
    assert "by_gender" not in fairness
    assert fairness["outcomes"] in ("observed", "no outcomes yet")
    for row in fairness["by_region"]:
        assert row["score"]["p25"] <= row["score"]["p50"] <= row["score"]["p75"]
        assert "bad_rate" in row and "with_outcome" in row
    # A time range without decisions: nothing served, no PSI.
    empty = _report(audit, regulator, from_time=common_timestamp(datetime(2100, 1, 1, tzinfo=UTC)))
    assert empty["decisions"]["n"] == 0 and not empty["stability"]["available"]
    with pytest.raises(grpc.RpcError) as missing:
        _report(audit, regulator, model_version="20000101T000000Z-00000000")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    page = render_monitoring_html(report)
    _check_page(page, figures=5)


def common_timestamp(moment: datetime) -> Any:
    from google.protobuf import timestamp_pb2

    return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()))


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "table":
            self.tables += 1
        for name in ("src", "href"):
            if tag != "img" and values.get(name):
                self.external.append(str(values[name]))


def _check_page(page: str, figures: int) -> None:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(parser.images) >= figures
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.external == [] and parser.tables >= 5


def test_the_cli_writes_a_self_contained_page(
    live_server: CreditRiskServer, service_data: ServiceData, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["audit", "report", "--data-dir", str(service_data.data_dir), "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "monitoring" and "fairness" in report
    _check_page(out.read_text(encoding="utf-8"), figures=1)
    assert CliRunner().invoke(main, ["audit", "report"]).exit_code != 0  # --out or --json


def test_a_model_without_a_profile_reports_it_missing(
    live_server: CreditRiskServer, service_data: ServiceData, tmp_path: Path
) -> None:
    """A model registered before profiles were recorded: the same version, report without
    its profile; it still loads, and its monitoring report says the profile is missing."""
    registry = ModelRegistry(service_data.data_dir)
    version, manifest, artifacts = registry.verify()
    report = json.loads(artifacts["report.json"])
    assert "reference_profile" in report  # trained now: it has one
    del report["reference_profile"]
    reserved = {"format", "version", "created_at", "libraries", "artifacts"}
    old = ModelRegistry(tmp_path).save_artifacts(
        model_text=artifacts[MODEL_FILE].decode(),
        calibrator=calibrator_from_json(artifacts[CALIBRATOR_FILE].decode()),
        report=report,
        fields={k: v for k, v in manifest.items() if k not in reserved},
        created_at=datetime.fromisoformat(manifest["created_at"]),
    )
    assert old == version
    ModelRegistry(tmp_path).load(old)
    result = monitoring_report(tmp_path, service_data.data_dir / "audit", version=old)
    assert not result["reference_profile"]["available"]
    assert not result["stability"]["available"]
    assert "no reference profile" in result["stability"]["reason"]
    assert result["decisions"]["n"] > 0 and result["grade_mix"]["days"]
    _check_page(render_monitoring_html(result), figures=1)


def test_gender_only_when_configured(
    live_server: CreditRiskServer, service_data: ServiceData
) -> None:
    log = service_data.data_dir / "audit"
    assert "by_gender" not in monitoring_report(service_data.data_dir, log)["fairness"]
    report = monitoring_report(service_data.data_dir, log, by_gender=True)
    groups = {row["group"] for row in report["fairness"]["by_gender"]}
    persons = report["decisions"]["by_subject_type"].get("person", 0)
    assert groups == ({"not recorded"} if persons else set())  # this server records none
    assert "<h3>By gender</h3>" in render_monitoring_html(report)


def test_bad_rates_join_defaults_in_the_window_after_the_as_of_date(
    service_data: ServiceData,
) -> None:
    defaults = service_data.frames["default_event"]
    single = defaults.group_by("subject_id").len().filter(pl.col("len") == 1)["subject_id"]
    first = (
        defaults.filter(pl.col("subject_id").is_in(single.implode()))
        .sort("default_date")
        .row(0, named=True)
    )
    when: date = first["default_date"]
    settings = load_settings(data_dir=service_data.pristine)
    pseudonymiser = make_pseudonymiser(settings)
    key = (
        first["subject_id"]
        if first["subject_type"] == "entity"
        else pseudonymiser.person_key(first["subject_id"])
    )
    defaulted = {str(s) for s in defaults["subject_id"].to_list()}
    clean = next(
        uscc
        for uscc in service_data.frames["legal_entity"]["uscc"].to_list()
        if uscc not in defaulted
    )

    def served(subject_type: str, subject_key: str, as_of: date) -> ServedDecision:
        return ServedDecision(
            time=datetime(2026, 11, 26, tzinfo=UTC),
            method="Score",
            subject_type=subject_type,
            subject_key=subject_key,
            region="33",
            age_band=None,
            gender=None,
            as_of=as_of,
            score=600,
            grade="C",
            features=np.zeros(1),
        )

    before = add_months(when, -3)
    decisions = [
        served(first["subject_type"], key, before),  # defaults 3 months later: bad
        served(first["subject_type"], key, when),  # the default is not after as-of
        served("entity", clean, before),  # no default: good
        served("entity", clean, date(2100, 1, 1)),  # window not on file: no outcome
    ]
    with RecordStore(settings.store_path, read_only=True) as store:
        outcomes = observed_outcomes(store, decisions)
    assert [(o.matured, o.bad) for o in outcomes] == [
        (True, True),
        (True, False),
        (True, False),
        (False, False),
    ]
