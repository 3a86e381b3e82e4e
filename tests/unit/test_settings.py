from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import ConfigFileError, load_settings


def test_defaults_put_all_state_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDIT_RISK_DATA_DIR", raising=False)
    monkeypatch.delenv("CREDIT_RISK_CONFIG", raising=False)
    settings = load_settings()
    assert settings.data_dir == Path("var")
    assert settings.store_path == Path("var/store.duckdb")
    assert settings.pseudonym_secret_path == Path("var/secrets/pseudonym.key")
    assert settings.privacy.store_raw_resident_id is False


def test_priority_override_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "credit-risk.toml"
    config.write_text(
        'data_dir = "from-file"\nhome_province = "44"\n[store]\nthreads = 3\n'
        "[ingest]\nbatch_rows = 20000\n"
    )
    monkeypatch.setenv("CREDIT_RISK_DATA_DIR", "from-env")
    monkeypatch.setenv("CREDIT_RISK_STORE__THREADS", "2")
    settings = load_settings(config)
    assert settings.data_dir == Path("from-env")
    assert settings.store.threads == 2
    assert settings.home_province == "44"
    assert settings.ingest.batch_rows == 20000
    assert load_settings(config, data_dir=Path("from-cli")).data_dir == Path("from-cli")


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[privacy]\nstore_raw_resident_id = true\n")
    monkeypatch.setenv("CREDIT_RISK_CONFIG", str(config))
    assert load_settings().privacy.store_raw_resident_id is True


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"nope\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('home_province = "99x"\n')
    with pytest.raises(ValidationError, match="home_province"):
        load_settings(config)
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValidationError, match="no_such_setting"):
        load_settings(config)
