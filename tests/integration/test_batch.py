"""``credit-risk score-batch`` (local engine) on a copy of the demo data directory."""

from __future__ import annotations

import csv
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import duckdb
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result
from conftest import PLAN, ServiceData, held_open_elsewhere, make_uscc
from distributed import Client, LocalCluster

from audit.entries import subject_groups, vector_from_entry
from audit.ids import derived_decision_id
from audit.log import DecisionLog, verify_log
from features.pipeline import KEY, build
from models.data import feature_matrix
from models.model import RiskModel
from records.runtime import make_pseudonymiser, open_store
from service.batch import (
    CHECKPOINT,
    CRASH_ENV,
    ENGINES,
    OUTPUT_SCHEMA,
    BatchError,
    BatchJob,
    run_batch,
)
from service.batch_cli import score_batch
from service.batch_dask import FEATURES_DIR
from service.cli import main
from settings import Settings, load_settings

AS_OF = PLAN.end_date


def _copy(service_data: ServiceData, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(service_data.pristine, data)
    return load_settings(data_dir=data)


def _log_entries(settings: Settings, start: int = 0) -> list[dict[str, object]]:
    with DecisionLog(settings.audit_log_path) as log:
        return [entry.body for entry in log.entries(start) if entry.body["kind"] == "batch"]


def decision_day(entry: dict[str, object]) -> date:
    return datetime.fromisoformat(str(entry["time"])).date()


def _cli(
    *args: str, crash: str | None = None, mark: str | None = None
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("credit-risk", path=str(Path(sys.executable).parent))
    assert executable
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    if mark:  # NAME=VALUE, to find the process's children later
        name, value = mark.split("=", 1)
        env[name] = value
    return subprocess.run(  # in a session of its own: a Ctrl-C crash point signals its group
        [executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        start_new_session=True,
    )


def test_all_subjects_equal_a_fresh_build_and_single_decisions(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    out = tmp_path / "scores.parquet"
    result = run_batch(settings, BatchJob(as_of=AS_OF, out=out, chunk_rows=600))
    table = pl.read_parquet(out)

    with open_store(settings, read_only=True) as store:
        fresh = build(store, AS_OF, home_province=settings.home_province)
    assert table.height == fresh.height == result.summary["subjects"]
    assert table[KEY].n_unique() == table.height
    assert result.summary["chunks"] == -(-fresh.height // 600)
    assert sum(result.summary["grades"].values()) == table.height

    entries = {e["decision_id"]: e for e in _log_entries(settings)}
    assert set(entries) == set(table["decision_id"].to_list())
    assert verify_log(settings.audit_log_path).ok

    model = RiskModel.load(settings.data_dir)
    matrix = feature_matrix(fresh)
    by_key = dict(zip(fresh[KEY].to_list(), range(fresh.height), strict=True))
    rows = table.to_dicts()
    for row in rows:
        vector = vector_from_entry(entries[row["decision_id"]])
        expected = matrix[by_key[row["subject_key"]]]
        assert vector.tobytes() == expected.tobytes()
        assert entries[row["decision_id"]]["subject"]["key"] == row["subject_key"]
    for row in rows[:: max(1, len(rows) // 150)]:  # single-row decisions on a sample
        decision = model.decide(matrix[by_key[row["subject_key"]]])
        assert row["probability_of_default"] == decision.probability_of_default
        assert (row["score"], row["grade"]) == (decision.score, decision.grade)
        assert row["thin_file"] == decision.thin_file
        assert [r["code"] for r in row["reasons"]] == [r.code for r in decision.reasons]
        assert row["model_version"] == model.version

    # Running the finished job again logs nothing and leaves the output as it was.
    again = run_batch(settings, BatchJob(as_of=AS_OF, out=out, chunk_rows=600))
    assert again.summary["subjects"] == table.height
    assert again.summary["decided_this_run"] == 0
    assert len(_log_entries(settings)) == table.height
    assert pl.read_parquet(out).equals(table)


def test_subject_list_rejects_bad_lines_without_failing(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    usccs = service_data.frames["legal_entity"]["uscc"].unique().sort().to_list()[:3]
    residents = service_data.frames["natural_person"]["resident_id"].unique().sort().to_list()[:2]
    unknown = make_uscc(98_765_432, region="110105")
    lines = [
        "# a comment",
        usccs[0],
        "not-an-id",  # line 3
        residents[0],
        unknown,  # line 5
        usccs[1],
        usccs[0],  # line 7: listed twice
        "",
        residents[1],
        usccs[2],
    ]
    listing = tmp_path / "subjects.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "list.parquet"
    result = _cli(
        "score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(out), "--chunk-rows", "2", "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr  # the progress bar, with its total
    summary = json.loads(result.stdout)
    assert summary["subjects"] == 5
    assert summary["rejects"] == 3
    assert [r["line"] for r in summary["reject_lines"]] == [3, 5, 7]
    assert "unknown subject" in summary["reject_lines"][1]["reason"]
    with (tmp_path / "out" / "list.parquet.rejects.csv").open(encoding="utf-8") as handle:
        assert [row["line"] for row in csv.DictReader(handle)] == ["3", "5", "7"]
    for resident in residents:
        assert resident not in result.stdout + out.with_suffix(".parquet.rejects.csv").read_text()

    table = pl.read_parquet(out)
    pseudonymiser = make_pseudonymiser(settings)
    expected = set(usccs) | {pseudonymiser.person_key(r) for r in residents}
    assert set(table[KEY].to_list()) == expected
    entries = _log_entries(settings)
    assert sorted(e["decision_id"] for e in entries) == sorted(table["decision_id"].to_list())
    assert all(e["client"].startswith("batch:") for e in entries)
    subjects = {e["subject"]["key"]: e["subject"] for e in entries}
    for key in usccs:
        assert subjects[key]["region"] == key[2:4]
    for resident in residents:  # the same groups as an online decision, without the raw id
        found = subjects[pseudonymiser.person_key(resident)]
        on = decision_day(entries[0])
        assert {k: found[k] for k in ("region", "age_band")} == subject_groups(
            "person", resident, on
        )


def _entity_listing(
    service_data: ServiceData, tmp_path: Path, count: int
) -> tuple[list[str], Path]:
    """The first ``count`` companies by USCC, and a subjects file listing them."""
    keys = service_data.frames["legal_entity"]["uscc"].unique().sort().to_list()[:count]
    listing = tmp_path / "subjects.txt"
    listing.write_text("\n".join(keys) + "\n", encoding="utf-8")
    return keys, listing


@pytest.mark.parametrize(
    ("crashes", "already_logged"),
    [
        (("mid-log:1", "after-log:2", "after-part:3"), {1: 12, 2: 25, 3: 25}),
        (("after-log:0",), {0: 25}),
        (("mid-log:2:int",), {2: 12}),  # Ctrl-C
    ],
)
def test_resume_after_kill_gives_one_row_and_one_entry_per_subject(
    service_data: ServiceData,
    tmp_path: Path,
    crashes: tuple[str, ...],
    already_logged: dict[int, int],
) -> None:
    settings = _copy(service_data, tmp_path)
    keys, listing = _entity_listing(service_data, tmp_path, 120)
    out = tmp_path / "resumed.parquet"
    command = (
        "score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(out), "--chunk-rows", "25", "--no-progress",
        "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    for crash in crashes:
        killed = _cli(*command, crash=crash)
        assert killed.returncode == (1 if crash.endswith(":int") else -9), killed.stderr
        assert not out.exists()
    finished = _cli(*command)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["subjects"] == len(keys)
    checkpoint = json.loads((tmp_path / "resumed.parquet.parts" / "checkpoint.json").read_text())
    found = {c["number"]: c["already_logged"] for c in checkpoint["chunks"] if c["already_logged"]}
    assert found == already_logged  # entries logged before a kill were not logged again

    table = pl.read_parquet(out)
    assert sorted(table[KEY].to_list()) == sorted(keys)
    entries = _log_entries(settings)
    assert len(entries) == len(keys)
    assert sorted(e["decision_id"] for e in entries) == sorted(table["decision_id"].to_list())
    assert verify_log(settings.audit_log_path).ok

    # The rows equal those of a job never interrupted (decision ids aside).
    clean = run_batch(
        settings, BatchJob(as_of=AS_OF, out=tmp_path / "clean.parquet", chunk_rows=25,
                           subjects_file=listing)
    )  # fmt: skip
    assert clean.summary["subjects"] == len(keys)
    other = pl.read_parquet(tmp_path / "clean.parquet")
    assert other.drop("decision_id").equals(table.drop("decision_id"))
    assert np.all(other["decision_id"].to_numpy() != table["decision_id"].to_numpy())


# -- the Dask engines ---------------------------------------------------------------------


def _without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


def _derived_ids(out: Path, keys: list[str]) -> list[str]:
    checkpoint = json.loads(out.with_name(out.name + ".parts").joinpath(CHECKPOINT).read_text())
    secret = bytes.fromhex(checkpoint["secret"])
    return [derived_decision_id(checkpoint["started_ms"], secret, key) for key in keys]


def test_dask_local_engine_gives_the_local_engines_job(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    local_out = tmp_path / "local.parquet"
    client = f"batch:{getpass.getuser()}"  # the command's
    local = run_batch(settings, BatchJob(as_of=AS_OF, out=local_out, chunk_rows=600, client=client))
    local_entries = _log_entries(settings)
    sequence = len(local_entries)

    database = tmp_path / "dask.duckdb"  # and into a DuckDB table: the combine is the driver's
    result = _cli(
        "score-batch", "--as-of", AS_OF.isoformat(), "--all", "--out", str(database),
        "--table", "dask_scores", "--chunk-rows", "600", "--engine", "dask-local",
        "--workers", "2", "--no-progress", "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "dask-local"
    assert summary["output"] == {
        "format": "duckdb", "database": str(database), "table": "dask_scores"
    }  # fmt: skip
    engine = next(p for p in score_batch.params if p.name == "engine")
    assert isinstance(engine.type, click.Choice)
    assert tuple(engine.type.choices) == ENGINES
    timing = ("engine", "seconds", "rows_per_second", "decide_seconds", "output")
    assert _without(summary, *timing) == _without(local.summary, *timing)

    table, other = _read_table(database, "dask_scores"), pl.read_parquet(local_out)
    assert table.height == other.height == local.summary["subjects"]
    assert table.drop("decision_id").equals(other.drop("decision_id"))
    keys = table[KEY].to_list()
    dask_out = tmp_path / "dask.duckdb.dask_scores"  # what its parts are named after
    assert table["decision_id"].to_list() == _derived_ids(dask_out, keys)
    assert other["decision_id"].to_list() == _derived_ids(local_out, keys)

    # One entry per subject each, equal but for the id and the time; one valid chain.
    entries = _log_entries(settings)[sequence:]
    assert [e["decision_id"] for e in entries] == table["decision_id"].to_list()
    assert [_without(e, "decision_id", "time") for e in entries] == [
        _without(e, "decision_id", "time") for e in local_entries
    ]
    assert verify_log(settings.audit_log_path).ok
    assert not (tmp_path / "dask.duckdb.dask_scores.parts" / FEATURES_DIR).exists()


def _read_table(database: Path, table: str) -> pl.DataFrame:
    with closing(duckdb.connect(str(database), read_only=True)) as connection:
        frame: pl.DataFrame = connection.sql(f"SELECT * FROM {table}").pl()
    return frame


def _tables(database: Path) -> dict[str, str | None]:
    with closing(duckdb.connect(str(database), read_only=True)) as connection:
        rows = connection.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall()
    return dict(rows)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker.encode() in environ:
                found.append(int(entry.name))
    return found


def _assert_none_left(marker: str) -> None:
    """No process carrying ``marker`` in its environment is left (within 10 s)."""
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(marker)


@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")  # in dask's reader
def test_a_job_killed_on_any_engine_resumes_on_any_engine(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    keys, listing = _entity_listing(service_data, tmp_path, 120)
    out = tmp_path / "resumed.parquet"
    command = (
        "score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(out), "--chunk-rows", "25", "--no-progress",
        "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    marker = f"CREDIT_RISK_TEST_MARK=dask-{os.getpid()}-{tmp_path.name}"
    killed = _cli(
        *command, "--engine", "dask-local", "--workers", "2", crash="mid-log:1", mark=marker
    )
    assert killed.returncode == -9, killed.stderr
    stopped = _cli(*command, "--engine", "dask-local", "--workers", "2", crash="after-log:2:int")
    assert stopped.returncode == 1, stopped.stderr  # Ctrl-C, workers included
    assert "Aborted!" in stopped.stderr
    killed = _cli(*command, "--workers", "2", crash="after-part:3", mark=marker)  # local
    assert killed.returncode == -9, killed.stderr
    with (
        LocalCluster(
            n_workers=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        finished = _cli(*command, "--engine", "dask", "--scheduler", cluster.scheduler_address)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["subjects"] == len(keys)
    checkpoint = json.loads((tmp_path / "resumed.parquet.parts" / CHECKPOINT).read_text())
    found = {c["number"]: c["already_logged"] for c in checkpoint["chunks"] if c["already_logged"]}
    assert found == {1: 12, 2: 25, 3: 25}

    table = pl.read_parquet(out)
    assert sorted(table[KEY].to_list()) == sorted(keys)
    entries = _log_entries(settings)
    assert len(entries) == len(keys)
    assert [e["decision_id"] for e in entries] == table["decision_id"].to_list()
    assert table["decision_id"].to_list() == _derived_ids(out, table[KEY].to_list())
    assert verify_log(settings.audit_log_path).ok
    # The killed drivers' worker processes (LocalCluster's, the local engine's) did not
    # outlive them.
    _assert_none_left(marker)


def test_a_dead_worker_or_ctrl_c_stops_the_local_engine_and_the_job_resumes(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    keys, listing = _entity_listing(service_data, tmp_path, 100)
    out = tmp_path / "workers.parquet"
    command = (
        "score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(out), "--chunk-rows", "25", "--no-progress", "--workers", "2",
        "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    marker = f"CREDIT_RISK_TEST_MARK=workers-{os.getpid()}-{tmp_path.name}"
    died = _cli(*command, crash="worker:1", mark=marker)  # the OOM killer, say
    assert died.returncode == 1, died.stderr
    # Chunk 1's worker died; chunk 0, decided beside it, may have been lost with it.
    assert re.search(r"Error: a worker process died while deciding chunk [01] ", died.stderr)
    assert "Traceback" not in died.stderr
    stopped = _cli(*command, crash="after-log:2:int", mark=marker)
    assert stopped.returncode == 1, stopped.stderr
    assert "Aborted!" in stopped.stderr
    finished = _cli(*command)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["subjects"] == len(keys)
    checkpoint = json.loads((tmp_path / "workers.parquet.parts" / CHECKPOINT).read_text())
    assert [c["number"] for c in checkpoint["chunks"]] == [0, 1, 2, 3]
    assert {c["number"]: c["already_logged"] for c in checkpoint["chunks"]} == {
        0: 0, 1: 0, 2: 25, 3: 0
    }  # fmt: skip

    table = pl.read_parquet(out)
    assert sorted(table[KEY].to_list()) == sorted(keys)
    entries = _log_entries(settings)
    assert [e["decision_id"] for e in entries] == table["decision_id"].to_list()
    assert verify_log(settings.audit_log_path).ok
    _assert_none_left(marker)


# -- DuckDB table output ------------------------------------------------------------------


def _mixed_listing(service_data: ServiceData, path: Path, entities: int, persons: int) -> Path:
    usccs = service_data.frames["legal_entity"]["uscc"].unique().sort().to_list()[:entities]
    residents = service_data.frames["natural_person"]["resident_id"].unique().sort().to_list()
    path.write_text("\n".join(usccs + residents[:persons]) + "\n", encoding="utf-8")
    return path


def test_duckdb_table_holds_the_parquet_rows_once(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    listing = _mixed_listing(service_data, tmp_path / "subjects.txt", 150, 150)
    parquet = run_batch(
        settings, BatchJob(as_of=AS_OF, out=tmp_path / "scores.parquet", chunk_rows=100,
                           subjects_file=listing)
    )  # fmt: skip
    assert parquet.summary["output"] == {
        "format": "parquet", "path": str(tmp_path / "scores.parquet")
    }  # fmt: skip
    sequence = len(_log_entries(settings))

    database = tmp_path / "out" / "results.duckdb"
    command = [
        "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(database), "--chunk-rows", "100", "--no-progress",
        "--data-dir", str(settings.data_dir),
    ]  # fmt: skip
    result = CliRunner().invoke(score_batch, command)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    name = f"scores_{AS_OF:%Y_%m_%d}"  # the default table
    assert summary["output"] == {"format": "duckdb", "database": str(database), "table": name}
    assert summary["subjects"] == parquet.summary["subjects"] == 300

    # The same rows, columns and types as the Parquet file; decision ids are the job's.
    table, expected = _read_table(database, name), pl.read_parquet(tmp_path / "scores.parquet")
    assert table.schema == expected.schema
    assert table.drop("decision_id").equals(expected.drop("decision_id"))
    assert table.filter(pl.col("warnings").list.len() > 0).height > 0
    base = database.with_name(f"results.duckdb.{name}")  # its parts and rejects
    assert table["decision_id"].to_list() == _derived_ids(base, table[KEY].to_list())
    entries = _log_entries(settings)[sequence:]
    assert [e["decision_id"] for e in entries] == table["decision_id"].to_list()
    assert (tmp_path / "out" / f"results.duckdb.{name}.rejects.csv").exists()
    with closing(duckdb.connect(str(database), read_only=True)) as connection:
        columns = connection.execute(f"DESCRIBE {name}").fetchall()
    types = {column[0]: column[1] for column in columns}
    assert (types["features_as_of"], types["score"], types["thin_file"]) == (
        "DATE", "BIGINT", "BOOLEAN"
    )  # fmt: skip
    assert types["reasons"] == "STRUCT(code VARCHAR, feature VARCHAR, contribution DOUBLE)[]"

    # The finished job again: nothing decided or logged, the table as it was, no duplicates.
    again = CliRunner().invoke(score_batch, command)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["decided_this_run"] == 0
    assert _read_table(database, name).equals(table)
    assert len(_log_entries(settings)) == sequence + table.height

    # Another job's table beside it in the same database.
    small = _mixed_listing(service_data, tmp_path / "small.txt", 2, 1)
    other = CliRunner().invoke(
        score_batch,
        ["--as-of", AS_OF.isoformat(), "--subjects", str(small), "--out", str(database),
         "--table", "small_one", "--no-progress", "--data-dir", str(settings.data_dir)],
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    assert _read_table(database, "small_one").height == 3
    assert _read_table(database, name).equals(table)

    # The same command from scratch (its parts removed) would be another run, with other
    # decision ids: it refuses the table the first run wrote, before any work.
    shutil.rmtree(base.with_name(base.name + ".parts"))
    fresh = CliRunner().invoke(score_batch, command)
    assert fresh.exit_code == 1
    assert f"named '{name}' that this job did not write" in fresh.output
    assert not base.with_name(base.name + ".parts").exists()
    assert len(_log_entries(settings)) == sequence + table.height + 3
    assert _read_table(database, name).equals(table)


def test_duckdb_table_after_kills_in_the_final_step_has_one_row_per_subject(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    keys, listing = _entity_listing(service_data, tmp_path, 60)
    database = tmp_path / "results.duckdb"
    command = (
        "score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
        "--out", str(database), "--table", "batch_2026_06_30", "--chunk-rows", "25",
        "--no-progress", "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    parts = tmp_path / "results.duckdb.batch_2026_06_30.parts"

    killed = _cli(*command, crash="mid-log:1")
    assert killed.returncode == -9, killed.stderr
    assert not database.exists()
    killed = _cli(*command, crash="mid-combine:end")  # in the table's transaction
    assert killed.returncode == -9, killed.stderr
    assert _tables(database) == {}
    killed = _cli(*command, crash="after-combine:end")  # committed, checkpoint not complete
    assert killed.returncode == -9, killed.stderr
    assert _read_table(database, "batch_2026_06_30").height == len(keys)
    assert not json.loads((parts / CHECKPOINT).read_text())["complete"]

    finished = _cli(*command)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["subjects"] == len(keys)
    checkpoint = json.loads((parts / CHECKPOINT).read_text())
    assert checkpoint["complete"]
    assert sorted(p.name for p in parts.iterdir()) == [CHECKPOINT]
    table = _read_table(database, "batch_2026_06_30")
    assert table[KEY].to_list() == keys  # one row per subject, in key order
    entries = _log_entries(settings)
    assert [e["decision_id"] for e in entries] == table["decision_id"].to_list()
    assert table["decision_id"].to_list() == _derived_ids(parts.with_suffix(""), keys)
    assert verify_log(settings.audit_log_path).ok
    assert list(_tables(database)) == ["batch_2026_06_30"]


def test_an_output_database_held_by_another_process_is_a_clear_error(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    listing = _mixed_listing(service_data, tmp_path / "subjects.txt", 2, 0)
    database = tmp_path / "results.duckdb"
    with held_open_elsewhere(database) as holder:
        refused = CliRunner().invoke(
            main,
            ["score-batch", "--as-of", AS_OF.isoformat(), "--subjects", str(listing),
             "--out", str(database), "--no-progress", "--data-dir", str(settings.data_dir)],
        )  # fmt: skip
    assert refused.exit_code == 1, refused.output
    assert f"the output database {database} is in use by another process" in refused.output
    assert f"(process {holder})" in refused.output
    assert not _log_entries(settings)  # refused before any work


def test_duckdb_output_refuses_foreign_tables_the_store_and_bad_names(
    service_data: ServiceData, tmp_path: Path
) -> None:
    settings = _copy(service_data, tmp_path)
    listing = _mixed_listing(service_data, tmp_path / "subjects.txt", 2, 0)
    common = ["--as-of", AS_OF.isoformat(), "--subjects", str(listing), "--no-progress",
              "--data-dir", str(settings.data_dir)]  # fmt: skip

    def run(*args: str) -> Result:
        return CliRunner().invoke(score_batch, [*common, *args])

    database = tmp_path / "theirs.duckdb"
    with closing(duckdb.connect(str(database))) as connection:
        connection.execute("CREATE TABLE ledger AS SELECT 42 AS amount")
    for name in ("ledger", "LEDGER"):  # DuckDB's names are case-insensitive
        refused = run("--out", str(database), "--table", name)
        assert refused.exit_code == 1, refused.output
        assert "that this job did not write" in refused.output
        assert not (tmp_path / f"theirs.duckdb.{name}.parts").exists()
    assert _read_table(database, "ledger").to_dicts() == [{"amount": 42}]

    store = settings.store_path
    link = tmp_path / "store-link.duckdb"
    link.symlink_to(store)
    for out in (store, link):
        refused = run("--out", str(out))
        assert refused.exit_code == 2, refused.output
        assert "'--out'" in refused.output and "records store" in refused.output
    with pytest.raises(BatchError, match="records store"):
        run_batch(settings, BatchJob(as_of=AS_OF, out=store, table="scores"))

    for name in ("x; DROP TABLE ledger", "9lives", "scores-2026", "select", "a" * 64):
        refused = run("--out", str(database), "--table", name)
        assert refused.exit_code == 2, refused.output
        assert "Invalid value for '--table'" in refused.output, refused.output
    refused = run("--out", str(tmp_path / "scores.parquet"), "--table", "scores")
    assert refused.exit_code == 2
    assert "--table goes with a DuckDB --out" in refused.output
    with pytest.raises(BatchError, match="table: 'x y' is not a plain SQL identifier"):
        run_batch(settings, BatchJob(as_of=AS_OF, out=database, table="x y"))
    assert list(_tables(database)) == ["ledger"]
    assert _log_entries(settings) == []

    # No subject to score: an empty table, with the columns and types all the same.
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(make_uscc(98_765_432, region="110105") + "\n", encoding="utf-8")
    empty = CliRunner().invoke(
        score_batch,
        ["--as-of", AS_OF.isoformat(), "--subjects", str(unknown), "--out", str(database),
         "--table", "nobody", "--no-progress", "--data-dir", str(settings.data_dir)],
    )  # fmt: skip
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout)["rejects"] == 1
    table = _read_table(database, "nobody")
    assert table.height == 0
    assert table.schema == pl.DataFrame(schema=OUTPUT_SCHEMA).schema
