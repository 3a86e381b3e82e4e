"""``credit-risk train`` and ``credit-risk report`` as a user runs them (installed script)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import credit_risk

from models.registry import ModelRegistry


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models-cli")
    result = credit_risk(
        "generate",
        "--entities",
        "400",
        "--persons",
        "1200",
        "--seed",
        "7",
        "--json",
        "--data-dir",
        str(directory),
    )
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> dict[str, object]:
    result = credit_risk(
        "train",
        "--as-of-end",
        "2025-05-31",
        "--months",
        "9",
        "--validation-months",
        "3",
        "--seed",
        "5",
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary: dict[str, object] = json.loads(lines[0])
    return summary


def test_train_prints_one_json_summary_and_registers_the_model(
    data_dir: Path, trained: dict[str, object]
) -> None:
    for key in ("version", "oot_auc", "oot_ks", "oot_ece", "calibration", "seconds"):
        assert key in trained, key
    assert trained["calibration"] in ("isotonic", "platt")
    assert isinstance(trained["oot_auc"], float) and trained["oot_auc"] > 0.6
    assert trained["validation_dates"] == ["2025-03-31", "2025-04-30", "2025-05-31"]
    assert len(trained["as_of_dates"]) == 9  # type: ignore[arg-type]
    assert trained["warnings"] == []
    registry = ModelRegistry(data_dir)
    assert registry.current() == trained["version"]
    assert registry.list_versions() == [trained["version"]]
    registry.load()  # verified and of the running catalog


def test_report_writes_the_html_page(
    data_dir: Path, trained: dict[str, object], tmp_path: Path
) -> None:
    result = credit_risk("report", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == data_dir / "models" / str(trained["version"]) / "report.html"
    assert '<img src="data:image/png;base64,' in path.read_text(encoding="utf-8")
    out = tmp_path / "page.html"
    result = credit_risk(
        "report", str(trained["version"]), "--out", str(out), "--data-dir", str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out and out.stat().st_size > 10_000


def test_errors_are_reported_plainly(data_dir: Path, trained: dict[str, object]) -> None:
    missing = credit_risk("report", "20200101T000000Z-00000000", "--data-dir", str(data_dir))
    assert missing.returncode == 3 and "no model version" in missing.stderr
    empty = credit_risk("report", "--data-dir", str(data_dir / "nowhere"))
    assert empty.returncode == 3 and "credit-risk train" in empty.stderr
    not_month_end = credit_risk(
        "train",
        "--as-of-end",
        "2025-06-15",
        "--months",
        "3",
        "--validation-months",
        "1",
        "--data-dir",
        str(data_dir),
    )
    assert not_month_end.returncode == 2 and "last day of a month" in not_month_end.stderr


def test_a_model_trained_aside_is_promoted_after_verification(
    data_dir: Path, trained: dict[str, object]
) -> None:
    aside = credit_risk(
        "train",
        "--as-of-end",
        "2025-05-31",
        "--months",
        "6",
        "--validation-months",
        "2",
        "--seed",
        "6",
        "--max-trees",
        "30",
        "--no-current",
        "--data-dir",
        str(data_dir),
    )
    assert aside.returncode == 0, aside.stderr
    version = json.loads(aside.stdout)["version"]
    registry = ModelRegistry(data_dir)
    assert registry.current() == trained["version"] != version
    promoted = credit_risk("promote", version, "--data-dir", str(data_dir))
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout) == {"previous": trained["version"], "current": version}
    assert registry.current() == version
    unknown = credit_risk("promote", "20200101T000000Z-00000000", "--data-dir", str(data_dir))
    assert unknown.returncode == 3 and registry.current() == version
    # A tampered artifact is refused, and the current model stays.
    model_file = registry.path(str(trained["version"])) / "model.txt"
    original = model_file.read_bytes()
    model_file.write_bytes(original + b"\n")
    try:
        tampered = credit_risk("promote", str(trained["version"]), "--data-dir", str(data_dir))
        assert tampered.returncode == 2 and "sha256" in tampered.stderr
        assert registry.current() == version
    finally:
        model_file.write_bytes(original)
    back = credit_risk("promote", str(trained["version"]), "--data-dir", str(data_dir))
    assert back.returncode == 0
