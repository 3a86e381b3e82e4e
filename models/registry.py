"""The model registry: one directory per trained model, every artifact hashed.

Layout under ``<data_dir>/models/``::

    <version>/model.txt          LightGBM's text model
    <version>/calibrator.json    the PD calibrator (plain numbers, no pickle)
    <version>/report.json        the evaluation report
    <version>/manifest.json      features, catalog hash, data fingerprints, parameters,
                                 calibration choice, metrics, library versions, dates,
                                 the training engine (local, or Dask with its
                                 partitioning and the Parquet files' hashes),
                                 and the sha256 of every artifact above
    <version>/manifest.sha256    the manifest's own sha256 (``sha256sum -c`` format)
    <version>/compiled/          optional: the forest compiled by lleaves, with its own
                                 record of hashes (:mod:`models.compiled`); attached after
                                 registration, outside the manifest, so attaching it never
                                 changes a verified artifact
    current                      the version served by default

A version is ``<UTC creation time>-<first 8 hex of the model's sha256>``, e.g.
``20261126T071500Z-3f9a12bc``, so versions sort by creation time. A version directory is
written under a temporary name and renamed into place, so a reader never sees half of
one. ``load`` verifies the manifest and every artifact against their recorded hashes and
refuses, naming the file, on any mismatch; it refuses a model trained on a different feature
catalog than the running code's.

The manifest's ``kind`` says what the model scores: ``catalog`` (the feature catalog's
vectors; a manifest without ``kind`` is one) or ``tabular`` (a flat table an agency brought,
see :mod:`models.tabular`: the table's own columns, category codes and LightGBM feature
names are in the manifest). A tabular model is verified like any other, but the catalog
checks do not apply to it, and it never becomes ``current``: the served model scores catalog
vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import polars as pl
import sklearn

from features.catalog import catalog_hash, feature_names
from models.calibration import Calibrator, calibrator_from_json, calibrator_to_json
from models.data import categorical_features
from models.scorecard import ScorecardConfig
from models.training import TrainedModel

__all__ = [
    "CATALOG_KIND",
    "COMPILED_DIR",
    "TABULAR_KIND",
    "ArtifactIntegrityError",
    "CatalogMismatchError",
    "LoadedModel",
    "ModelNotFoundError",
    "ModelRegistry",
    "RegistryError",
]

MANIFEST_FORMAT = 1
MODEL_FILE = "model.txt"
CALIBRATOR_FILE = "calibrator.json"
REPORT_FILE = "report.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_HASH_FILE = "manifest.sha256"
CURRENT_FILE = "current"
COMPILED_DIR = "compiled"
VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
CATALOG_KIND = "catalog"
TABULAR_KIND = "tabular"


class RegistryError(RuntimeError):
    """The registry cannot store or serve a model."""


class ModelNotFoundError(RegistryError, LookupError):
    """No such version, or no current model."""


class ArtifactIntegrityError(RegistryError):
    """A model file does not match the hash recorded for it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class CatalogMismatchError(RegistryError):
    """The model was trained on another feature catalog than the running code's."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    path: Path
    manifest: dict[str, Any]
    booster: Any  # lightgbm.Booster
    calibrator: Calibrator
    scorecard: ScorecardConfig
    kind: str = CATALOG_KIND


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "lightgbm": str(lgb.__version__),
        "scikit-learn": str(sklearn.__version__),
        "polars": pl.__version__,
        "numpy": np.__version__,
        "duckdb": str(duckdb.__version__),
    }


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


class ModelRegistry:
    """Trained models under ``<data_dir>/models``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "models"

    # -- writing ------------------------------------------------------------------------

    def save(
        self, model: TrainedModel, *, created_at: datetime | None = None, make_current: bool = True
    ) -> str:
        """Store ``model`` as a new version (and make it current); return the version."""
        fields = {
            "kind": CATALOG_KIND,
            "catalog_hash": model.catalog_hash,
            "features": list(model.feature_names),
            "categorical_features": categorical_features(),
            "training_params": model.params.to_dict(),
            "lightgbm_params": model.lightgbm_params,
            "best_iteration": model.best_iteration,
            "calibration": model.calibration.to_dict(),
            "scorecard": model.scorecard.to_dict(),
            "data": model.data.to_dict(),
            "metrics": model.metrics,
            "training_seconds": round(model.seconds, 3),
            "training_engine": model.engine,
        }
        return self.save_artifacts(
            model_text=model.model_text,
            calibrator=model.calibrator,
            report=model.report,
            fields=fields,
            created_at=created_at,
            make_current=make_current,
        )

    def save_artifacts(
        self,
        *,
        model_text: str,
        calibrator: Calibrator,
        report: dict[str, Any],
        fields: dict[str, Any],
        created_at: datetime | None = None,
        make_current: bool = True,
    ) -> str:
        """Store a model's artifacts as a new version; ``fields`` go into the manifest beside
        the version, creation time, library versions and artifact hashes (which they may not
        override). Only a catalog model may be made current."""
        kind = fields.get("kind", CATALOG_KIND)
        if make_current and kind != CATALOG_KIND:
            raise RegistryError(f"a {kind} model cannot be the current (served) model")
        reserved = {"format", "version", "created_at", "libraries", "artifacts"} & set(fields)
        if reserved:
            raise ValueError(f"manifest fields {sorted(reserved)} are set by the registry")
        created = (created_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        model_bytes = model_text.encode("utf-8")
        model_sha = sha256_hex(model_bytes)
        version = f"{created:%Y%m%dT%H%M%SZ}-{model_sha[:8]}"
        final = self.root / version
        if final.exists():
            raise RegistryError(f"model version {version} already exists in {self.root}")
        artifacts = {
            MODEL_FILE: model_bytes,
            CALIBRATOR_FILE: calibrator_to_json(calibrator).encode("utf-8"),
            REPORT_FILE: _json_bytes(report),
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": version,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            **fields,
            "libraries": library_versions(),
            "artifacts": {name: sha256_hex(data) for name, data in artifacts.items()},
        }
        manifest_bytes = _json_bytes(manifest)
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{version}-{os.getpid()}"
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        try:
            for name, data in artifacts.items():
                _write(incoming / name, data)
            _write(incoming / MANIFEST_FILE, manifest_bytes)
            _write(
                incoming / MANIFEST_HASH_FILE,
                f"{sha256_hex(manifest_bytes)}  {MANIFEST_FILE}\n".encode(),
            )
            _fsync_dir(incoming)
            incoming.rename(final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        if make_current:
            self.set_current(version)
        return version

    def attach_compiled(self, version: str, files: dict[str, bytes]) -> Path:
        """Store (or replace) ``<version>/compiled/`` with ``files`` and return its path.

        The version's manifest and artifacts are not touched: the compiled files carry
        their own record of hashes, checked by :func:`models.compiled.load_compiled`. The
        directory is written under a temporary name and renamed into place; a replaced one
        is renamed away first (a reader meanwhile sees none, and scores with LightGBM)."""
        directory = self._directory(version)
        if not files or any(name != Path(name).name or name.startswith(".") for name in files):
            raise ValueError("compiled files must be plain file names")
        incoming = directory / f".{COMPILED_DIR}-incoming-{os.getpid()}"
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        target = directory / COMPILED_DIR
        retired = directory / f".{COMPILED_DIR}-old-{os.getpid()}"
        try:
            for name, data in files.items():
                _write(incoming / name, data)
            _fsync_dir(incoming)
            if target.exists():
                shutil.rmtree(retired, ignore_errors=True)
                target.rename(retired)
            incoming.rename(target)
            _fsync_dir(directory)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        shutil.rmtree(retired, ignore_errors=True)
        return target

    def set_current(self, version: str) -> None:
        directory = self._directory(version)
        kind = json.loads((directory / MANIFEST_FILE).read_bytes()).get("kind", CATALOG_KIND)
        if kind != CATALOG_KIND:
            raise RegistryError(f"model {version} is a {kind} model; it cannot be the current one")
        temporary = self.root / f".{CURRENT_FILE}-{os.getpid()}"
        _write(temporary, f"{version}\n".encode())
        os.replace(temporary, self.root / CURRENT_FILE)
        _fsync_dir(self.root)

    # -- reading ------------------------------------------------------------------------

    def list_versions(self) -> list[str]:
        """Every stored version, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir()
            and VERSION_PATTERN.match(entry.name)
            and (entry / MANIFEST_FILE).is_file()
        )

    def current(self) -> str | None:
        pointer = self.root / CURRENT_FILE
        if not pointer.is_file():
            return None
        return pointer.read_text(encoding="utf-8").strip() or None

    def path(self, version: str | None = None) -> Path:
        return self._directory(self._resolve(version))

    def _resolve(self, version: str | None) -> str:
        if version is not None:
            return version
        current = self.current()
        if current is None:
            raise ModelNotFoundError(
                f"no current model in {self.root}; train one with `credit-risk train`"
            )
        return current

    def _directory(self, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise ModelNotFoundError(f"{version!r} is not a model version name")
        directory = self.root / version
        if not (directory / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(f"no model version {version} in {self.root}")
        return directory

    def verify(self, version: str | None = None) -> tuple[str, dict[str, Any], dict[str, bytes]]:
        """Check the manifest and every artifact against their recorded hashes; return the
        version, the manifest and the artifacts' bytes (as verified)."""
        version = self._resolve(version)
        directory = self._directory(version)
        manifest_path = directory / MANIFEST_FILE
        manifest_bytes = manifest_path.read_bytes()
        recorded = self._recorded_manifest_hash(directory)
        if sha256_hex(manifest_bytes) != recorded:
            raise ArtifactIntegrityError(
                manifest_path, f"sha256 differs from the one in {MANIFEST_HASH_FILE}; refusing"
            )
        manifest: dict[str, Any] = json.loads(manifest_bytes)
        if manifest.get("version") != version:
            raise ArtifactIntegrityError(manifest_path, f"names version {manifest.get('version')}")
        artifacts: dict[str, bytes] = {}
        expected_files = {MODEL_FILE, CALIBRATOR_FILE, REPORT_FILE}
        if set(manifest.get("artifacts", {})) != expected_files:
            raise ArtifactIntegrityError(manifest_path, "does not list the expected artifacts")
        for name, expected in sorted(manifest["artifacts"].items()):
            path = directory / name
            if not path.is_file():
                raise ArtifactIntegrityError(path, "missing")
            data = path.read_bytes()
            if sha256_hex(data) != expected:
                raise ArtifactIntegrityError(
                    path, "sha256 differs from the one recorded in manifest.json; refusing"
                )
            artifacts[name] = data
        if not sha256_hex(artifacts[MODEL_FILE]).startswith(version.rsplit("-", 1)[1]):
            raise ArtifactIntegrityError(
                directory / MODEL_FILE, f"does not match the hash in its version name {version}"
            )
        return version, manifest, artifacts

    @staticmethod
    def _recorded_manifest_hash(directory: Path) -> str:
        path = directory / MANIFEST_HASH_FILE
        if not path.is_file():
            raise ArtifactIntegrityError(path, "missing")
        return path.read_text(encoding="utf-8").split(" ", 1)[0].strip()

    def report(self, version: str | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(version, manifest, report) of a verified model, whatever its catalog."""
        version, manifest, artifacts = self.verify(version)
        return version, manifest, json.loads(artifacts[REPORT_FILE])

    def load(self, version: str | None = None) -> LoadedModel:
        """A verified model (the current one by default): a catalog model trained on the
        running catalog, or a tabular model (no catalog check: it has its own columns)."""
        version, manifest, artifacts = self.verify(version)
        kind = manifest.get("kind", CATALOG_KIND)
        if kind == TABULAR_KIND:
            return self._loaded(version, manifest, artifacts, kind, manifest.get("model_features"))
        if kind != CATALOG_KIND:
            raise RegistryError(f"model {version} is of unknown kind {kind!r}")
        running = catalog_hash()
        if manifest.get("catalog_hash") != running:
            raise CatalogMismatchError(
                f"model {version} was trained on feature catalog {manifest.get('catalog_hash')}, "
                f"but the running code's feature catalog hash is {running}: the catalog hash "
                "differs, so its features would not mean what the model learned; train a new "
                "model or run the code it was trained with"
            )
        if tuple(manifest.get("features", ())) != feature_names():
            raise CatalogMismatchError(
                f"model {version} lists other features than the running catalog's"
            )
        return self._loaded(version, manifest, artifacts, kind, list(feature_names()))

    def _loaded(
        self,
        version: str,
        manifest: dict[str, Any],
        artifacts: dict[str, bytes],
        kind: str,
        features: Any,
    ) -> LoadedModel:
        booster = lgb.Booster(model_str=artifacts[MODEL_FILE].decode("utf-8"))
        if not isinstance(features, list) or list(booster.feature_name()) != features:
            raise ArtifactIntegrityError(
                self.root / version / MODEL_FILE, "has other features than its manifest"
            )
        return LoadedModel(
            version=version,
            path=self.root / version,
            manifest=manifest,
            booster=booster,
            calibrator=calibrator_from_json(artifacts[CALIBRATOR_FILE].decode("utf-8")),
            scorecard=ScorecardConfig.from_dict(manifest["scorecard"]),
            kind=kind,
        )
