"""``credit-risk serve --demo``: make whatever the data directory lacks, then serve.

Each step runs only when its result is missing, so a second start is quick: a generated
province (fixed seed) when the store has no entities, a trained and registered model when
none is current or the current one was trained on another feature catalog, a feature
snapshot when none exists for the running catalog. Demo client
keys are issued afresh on every demo start (the clients file keeps hashes only, so a key
cannot be shown twice) and printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from features.store import FeatureStore
from models.data import monthly_dates
from models.registry import CatalogMismatchError, ModelNotFoundError, ModelRegistry
from models.training import TrainingParams, train
from records.generator import ProvinceParams, generate_province
from records.runtime import ingest_frames, make_ingestor, open_store
from service.clients import REGISTRY_TABLES, ClientRegistry, Role
from settings import Settings

__all__ = ["DEMO_CLIENTS", "DemoPlan", "DemoResult", "prepare_demo"]

# name, role, quota (calls per second)
DEMO_CLIENTS: tuple[tuple[str, Role, float], ...] = (
    ("demo-lender", Role.LENDER, 50_000.0),
    ("demo-agency", Role.AGENCY, 50_000.0),
    ("demo-regulator", Role.REGULATOR, 100.0),
    ("demo-reporter", Role.REPORTER, 1_000.0),
    ("demo-admin", Role.ADMIN, 100.0),
)


@dataclass(frozen=True)
class DemoPlan:
    """The demo province and model; the defaults are what ``make serve`` builds."""

    entities: int = 15_000
    persons: int = 35_000
    seed: int = 7
    end_date: date = date(2026, 6, 30)
    months: int = 36
    train_as_of_end: date = date(2025, 5, 31)  # 12 months of labels before end_date
    train_months: int = 9
    validation_months: int = 3
    training_threads: int = 2


@dataclass
class DemoResult:
    steps: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # client name -> key, shown once
    as_of: date | None = None
    sample_uscc: str | None = None


def _serves_running_catalog(registry: ModelRegistry) -> bool:
    """Whether the current model can serve this code (a catalog change needs a new one)."""
    try:
        registry.load()
    except CatalogMismatchError:
        return False
    except ModelNotFoundError:
        return False
    return True


def prepare_demo(
    settings: Settings,
    plan: DemoPlan | None = None,
    *,
    echo: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    plan = plan or DemoPlan()
    result = DemoResult()
    with open_store(settings) as store:
        if store.count("legal_entity") == 0:
            echo(
                f"generating a demo province: {plan.entities:,} entities, "
                f"{plan.persons:,} persons, seed {plan.seed} ..."
            )
            frames = generate_province(
                ProvinceParams(
                    entities=plan.entities,
                    persons=plan.persons,
                    seed=plan.seed,
                    end_date=plan.end_date,
                    months=plan.months,
                    home_province=settings.home_province,
                )
            )
            ingest_frames(make_ingestor(settings, store), frames, label=f"demo:seed={plan.seed}")
            result.steps.append("generated")
        registry = ModelRegistry(settings.data_dir)
        if not _serves_running_catalog(registry):
            echo("training and registering the demo model ...")
            dates = monthly_dates(plan.train_as_of_end, plan.train_months + plan.validation_months)
            model = train(
                store,
                as_of_dates=dates[: plan.train_months],
                validation_dates=dates[plan.train_months :],
                params=TrainingParams(num_threads=plan.training_threads),
                home_province=settings.home_province,
                retention_years=settings.features.retention_years,
            )
            version = registry.save(model)
            echo(f"registered model {version} (out-of-time AUC {model.metrics['oot_auc']:.3f})")
            result.steps.append("trained")
        features = FeatureStore(
            store,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
        )
        as_of = features.latest_as_of()
        if as_of is None:
            as_of = plan.end_date
            echo(f"materialising features as of {as_of} ...")
            features.materialise(as_of)
            result.steps.append("materialised")
        result.as_of = as_of
        result.sample_uscc = store.scalar(
            "SELECT uscc FROM legal_entity WHERE established_on <= ? ORDER BY uscc LIMIT 1",
            [as_of],
        )
    clients = ClientRegistry(settings.clients_path)
    existing = {client.name for client in clients.clients()}
    for name, role, quota in DEMO_CLIENTS:
        if name in existing:
            clients.revoke(name)
        # The demo reporter stands for every department, registries included.
        grants = REGISTRY_TABLES if role is Role.REPORTER else ()
        _, key = clients.add(name, role, quota_per_second=quota, registries=grants)
        result.keys[name] = key
    result.steps.append("keys")
    return result
