"""One typed settings object for the whole service.

Values come from, highest priority first: explicit overrides (CLI options such as
``--data-dir``), ``CREDIT_RISK_*`` environment variables (nested with ``__``, e.g.
``CREDIT_RISK_STORE__THREADS=2``), a TOML config file (``--config`` or
``CREDIT_RISK_CONFIG``), then the defaults below. All runtime state lives under
``data_dir`` unless a path is set explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["ConfigFileError", "MonitoringSettings", "Settings", "load_settings"]

CONFIG_ENV_VAR = "CREDIT_RISK_CONFIG"


class ConfigFileError(ValueError):
    """The configuration file named by the user is missing or unreadable."""


class StoreSettings(BaseModel):
    """The embedded DuckDB records store."""

    path: Path | None = Field(
        default=None, description="DuckDB file; default <data_dir>/store.duckdb"
    )
    threads: int | None = Field(default=None, ge=1, description="DuckDB worker threads")
    memory_limit: str | None = Field(
        default="4GB",
        description="DuckDB memory limit (it spills to disk beyond it); leaves room for the "
        "feature matrix and models in the same process",
    )


class PrivacySettings(BaseModel):
    """Pseudonymisation of natural persons."""

    pseudonym_secret_file: Path | None = Field(
        default=None,
        description="HMAC key file; default <data_dir>/secrets/pseudonym.key, made on first use",
    )
    store_raw_resident_id: bool = Field(
        default=False,
        description="Keep the raw resident identity number beside its pseudonym (off by default)",
    )


class IngestSettings(BaseModel):
    """File ingestion."""

    batch_rows: int = Field(default=500_000, ge=1_000, description="rows validated per batch")
    csv_block_bytes: int = Field(
        default=16 << 20, ge=1 << 16, description="CSV read block; also the longest line accepted"
    )


class FeatureSettings(BaseModel):
    """Point-in-time features."""

    retention_years: int = Field(
        default=5,
        ge=1,
        le=50,
        description="negative public records that ended longer ago than this no longer count",
    )


class TlsSettings(BaseModel):
    """Transport security of the gRPC server; all unset = plaintext (127.0.0.1 only)."""

    cert_file: Path | None = Field(default=None, description="server certificate chain (PEM)")
    key_file: Path | None = Field(default=None, description="server private key (PEM)")
    client_ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that client certificates must chain to; set = mutual TLS, "
        "a client without such a certificate is refused during the handshake",
    )


class ServerSettings(BaseModel):
    """The online gRPC service."""

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=50051, ge=0, le=65535, description="port; 0 = any free port")
    workers: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="threads for the methods other than Score and ScoreStream (which run "
        "on the event loop): at most this many such calls run at once, besides the "
        "WatchAlerts streams, which get monitoring.max_watch_streams threads more",
    )
    grace_seconds: float = Field(
        default=10.0, ge=0, description="on SIGTERM, how long in-flight calls may finish"
    )
    max_message_bytes: int = Field(
        default=1 << 20, ge=1 << 10, description="largest request or response message"
    )
    max_stream_items: int = Field(
        default=1_000_000, ge=1, description="most requests one ScoreStream call may carry"
    )
    metrics_host: str = Field(default="127.0.0.1", description="Prometheus endpoint address")
    metrics_port: int | None = Field(
        default=9464, ge=0, le=65535, description="Prometheus /metrics port; unset = off"
    )
    clients_file: Path | None = Field(
        default=None, description="API clients (hashed keys); default <data_dir>/clients.json"
    )
    idempotency_window_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="how long the same request_id from the same client returns the same decision",
    )
    idempotency_max_entries: int = Field(
        default=1_000_000, ge=0, description="stored answers kept for idempotency, at most"
    )
    prepare_answers: bool = Field(
        default=True,
        description="in idle time, once the reasons are computed, make the part of every "
        "subject's answer and decision-log entry that depends on its decision alone, so a "
        "request only adds its own fields (memory: about 2.3 KB a subject, 117 MB for the "
        "50k of the demo province); off: made on each request",
    )
    non_inquiry_purposes: list[str] = Field(
        default_factory=lambda: ["post_loan_management", "self_inquiry"],
        description="purposes whose queries are not recorded as credit inquiries (they do "
        "not count against the subject, as bureau practice has it)",
    )
    inquiry_flush_seconds: float = Field(
        default=1.0, gt=0, description="how often recorded inquiries are written to the store"
    )
    model_version: str | None = Field(
        default=None, description="registered model version to serve; unset = current"
    )
    as_of: str | None = Field(
        default=None,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="feature snapshot date to serve (YYYY-MM-DD); unset = the latest one",
    )
    tls: TlsSettings = Field(default_factory=TlsSettings)


class AuditSettings(BaseModel):
    """The decision log (hash-chained, append-only)."""

    directory: Path | None = Field(
        default=None, description="log directory; default <data_dir>/audit"
    )
    segment_bytes: int = Field(
        default=64 << 20, ge=1 << 12, description="a segment file rotates before this size"
    )
    fsync: bool = Field(
        default=True,
        description="fsync each group commit: an acknowledged decision survives power loss "
        "(off: it survives a killed process only)",
    )
    commit_delay_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="while decisions are being logged concurrently, how long a group commit "
        "may wait for as many entries as the last group held (fewer, larger commits, and "
        "answers sent together: Score calls/s with 64 in flight on 2 cores +15-20% at 2 ms "
        "over 1 ms); a group that fills or a lone decision is not delayed; 0 = no wait",
    )
    fairness_by_gender: bool = Field(
        default=False,
        description="record each person's gender in the decision log and show the monitoring "
        "report's fairness view by gender",
    )


class MonitoringSettings(BaseModel):
    """Credit monitoring: records reported over gRPC, refresh, watchlists and alerts."""

    max_batch_rows: int = Field(
        default=10_000, ge=1, description="rows in one SubmitRecords batch, at most"
    )
    max_watch_subjects: int = Field(
        default=10_000, ge=1, description="subjects in one Watch or Unwatch request, at most"
    )
    max_watch_streams: int = Field(
        default=32,
        ge=1,
        description="WatchAlerts streams open at once (each holds a server thread); "
        "RESOURCE_EXHAUSTED beyond",
    )
    score_move_points: int = Field(
        default=20, ge=1, description="a score move of at least this many points is an alert"
    )
    alert_batch: int = Field(
        default=500, ge=1, description="alerts read from the store per WatchAlerts round"
    )


class Settings(BaseSettings):
    """Everything configurable about the service."""

    model_config = SettingsConfigDict(
        env_prefix="CREDIT_RISK_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(default=Path("var"), description="root of all runtime state")
    home_province: str = Field(
        default="33",
        pattern=r"^[1-8][0-9]$",
        description="province-level code of the market this service serves",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @property
    def store_path(self) -> Path:
        return self.store.path or self.data_dir / "store.duckdb"

    @property
    def clients_path(self) -> Path:
        return self.server.clients_file or self.data_dir / "clients.json"

    @property
    def audit_log_path(self) -> Path:
        return self.audit.directory or self.data_dir / "audit"

    @property
    def pseudonym_secret_path(self) -> Path:
        return self.privacy.pseudonym_secret_file or self.data_dir / "secrets" / "pseudonym.key"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: overrides > environment > config file > defaults."""
    raw_path = config_file or os.environ.get(CONFIG_ENV_VAR)
    path = Path(raw_path) if raw_path else None
    if path is not None and not path.is_file():
        raise ConfigFileError(f"config file {str(path)!r} does not exist or is not a file")

    class _FileBackedSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    clean = {key: value for key, value in overrides.items() if value is not None}
    return _FileBackedSettings(**clean)
