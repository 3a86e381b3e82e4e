"""Shared fixtures: a real DuckDB file per test, valid identifiers on demand, and (for the
service tests) a demo data directory with a real server on a local port serving it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import polars as pl
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from records.generator import ProvinceParams, generate_province
from records.identifiers import (
    organisation_check_character,
    resident_id_check_character,
    uscc_check_character,
)
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from service.demo import DemoPlan, prepare_demo
from service.server import CreditRiskServer
from settings import Settings, load_settings

TEST_SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
TODAY = date(2026, 11, 26)


def make_uscc(n: int, region: str = "330106") -> str:
    body8 = f"{n:08d}"
    first17 = "91" + region + body8 + organisation_check_character(body8)
    return first17 + uscc_check_character(first17)


def make_resident_id(n: int, region: str = "330106", birth: str = "19850315") -> str:
    first17 = region + birth + f"{n % 1000:03d}"
    return first17 + resident_id_check_character(first17)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore(tmp_path / "store.duckdb") as opened:
        yield opened


@pytest.fixture
def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(TEST_SECRET)


@pytest.fixture
def ingestor(store: RecordStore, pseudonymiser: Pseudonymiser) -> Ingestor:
    return Ingestor(store, pseudonymiser, today=TODAY, csv_block_bytes=1 << 16)


def write_csv(path: Path, rows: list[dict[str, str | None]]) -> Path:
    pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}).write_csv(path)
    return path


def entity_row(n: int, **changes: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "uscc": make_uscc(n),
        "name": f"Test Company {n}",
        "entity_type": "limited_liability_company",
        "industry": "C",
        "region_code": "330106",
        "registered_capital": "1000000.00",
        "established_on": "2015-04-01",
        "status": "active",
        "status_date": None,
        "source": "AMR-33",
        "reported_at": "2024-01-02T10:00:00",
    }
    row.update(changes)
    return row


def person_row(n: int, **changes: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "resident_id": make_resident_id(n),
        "residence_region": "330106",
        "education": "bachelor",
        "source": "PSB-33",
        "reported_at": "2024-01-02T10:00:00",
    }
    row.update(changes)
    return row


# -- the service -------------------------------------------------------------------------

PLAN = DemoPlan(entities=600, persons=1400, train_months=9, validation_months=3)
ROLES = ("lender", "agency", "regulator", "reporter", "admin")


@dataclass
class ServiceData:
    data_dir: Path
    pristine: Path  # an untouched copy, for servers in other processes
    keys: dict[str, str]  # role -> API key
    frames: dict[str, pl.DataFrame]  # the generated records, raw identifiers included


def service_settings(data_dir: Path, **server: Any) -> Settings:
    return load_settings(data_dir=data_dir, server={"port": 0, "metrics_port": 0, **server})


@pytest.fixture(scope="session")
def service_data(tmp_path_factory: pytest.TempPathFactory) -> ServiceData:
    directory = tmp_path_factory.mktemp("service")
    result = prepare_demo(load_settings(data_dir=directory), PLAN)
    pristine = tmp_path_factory.mktemp("service-pristine") / "data"
    shutil.copytree(directory, pristine)
    frames = generate_province(
        ProvinceParams(
            entities=PLAN.entities,
            persons=PLAN.persons,
            seed=PLAN.seed,
            end_date=PLAN.end_date,
            months=PLAN.months,
        )
    )
    keys = {role: result.keys[f"demo-{role}"] for role in ROLES}
    return ServiceData(directory, pristine, keys, frames)


@pytest.fixture(scope="session")
def live_server(service_data: ServiceData) -> Iterator[CreditRiskServer]:
    server = CreditRiskServer(service_settings(service_data.data_dir))
    server.start()
    server.load_and_serve()
    yield server
    server.stop(1)


@pytest.fixture(scope="session")
def channel(live_server: CreditRiskServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{live_server.port}") as opened:
        yield opened


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def rpc_details(err: grpc.RpcError) -> dict[str, Any]:
    """The google.rpc details of a failed call, by kind."""
    status = rpc_status.from_call(err)
    assert status is not None, "every error carries google.rpc.Status details"
    out: dict[str, Any] = {}
    for kind in ("BadRequest", "RetryInfo", "ErrorInfo", "RequestInfo"):
        message_type = getattr(error_details_pb2, kind)
        for detail in status.details:
            if detail.Is(message_type.DESCRIPTOR):
                message = message_type()
                detail.Unpack(message)
                out[kind] = message
    return out


@contextmanager
def held_open_elsewhere(database: Path) -> Iterator[int]:
    """``database`` opened for writing by another process (as a running server holds the
    store) for as long as the block runs; yields that process's id."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(database)!r}); "
         "print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


class HeldSubjects:
    """The part of a decision book the request checks use: which subjects it holds
    (subject key -> subject type)."""

    def __init__(self, held: dict[str, str] | None = None) -> None:
        self.held = held or {}

    def lookup(self, subject_key: str) -> SimpleNamespace | None:
        kind = self.held.get(subject_key)
        return None if kind is None else SimpleNamespace(subject_type=kind)
