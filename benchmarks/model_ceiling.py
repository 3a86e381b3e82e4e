"""How much of a default is knowable: the AUC of the generator's own latent risk.

    .venv/bin/python benchmarks/model_ceiling.py --data-dir /tmp/model-quality-...

The generator draws each subject's latent risk first and lets it drive every observable
record and the defaults. Scoring the out-of-time labels (the same population and
exclusions as training frames) with that latent risk gives a ceiling a model built on
the observable records can approach but not pass by much. Needs the data directory of
`benchmarks/model_quality.py` (same seed and sizes) for the pseudonym secret and labels.
Reads the generator's internal stages (diagnostic only).
"""

import argparse
import glob
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from features.training import add_months
from models.data import monthly_dates
from records.generator import province as stages
from records.generator.params import Calendar, ProvinceParams, rng_for
from records.generator.relations import assign_ownership, entity_risk
from records.generator.subjects import make_entities, make_persons
from records.pseudonym import Pseudonymiser, load_or_create_secret
from records.store import RecordStore

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data-dir", type=Path, default=None)
parser.add_argument("--entities", type=int, default=60_000)
parser.add_argument("--persons", type=int, default=140_000)
parser.add_argument("--seed", type=int, default=7)
args = parser.parse_args()
data = args.data_dir or Path(glob.glob("/tmp/model-quality-*")[0])
params = ProvinceParams(entities=args.entities, persons=args.persons, seed=args.seed)
cal = Calendar.of(params)
persons = make_persons(rng_for(params.seed, stages._PERSONS), params, cal)
draft = make_entities(rng_for(params.seed, stages._ENTITIES), params, cal)
ownership = assign_ownership(rng_for(params.seed, stages._OWNERSHIP), draft, persons, cal)
e_risk = entity_risk(draft.own_risk, persons, ownership)
ps = Pseudonymiser(load_or_create_secret(data / "secrets" / "pseudonym.key"))
entities = stages.finish_entities(
    rng_for(params.seed, stages._STATUS), draft, e_risk, cal, ownership.established
)
keys = entities.uscc.to_list() + ps.person_keys(persons.resident_id.to_list())
risk = np.concatenate([e_risk, persons.risk])
oracle = pl.DataFrame({"subject_key": keys, "latent_risk": risk})
with RecordStore(data / "store.duckdb") as store:
    defaults = pl.from_arrow(
        store.connection.sql("select subject_key, default_date from default_event").to_arrow_table()
    )
    for as_of in monthly_dates(date(2025, 5, 31), 3):
        end = add_months(as_of, 12)
        start = add_months(as_of, -12)
        bad = set(
            defaults.filter((pl.col("default_date") > as_of) & (pl.col("default_date") <= end))[
                "subject_key"
            ]
        )
        excl = set(
            defaults.filter((pl.col("default_date") > start) & (pl.col("default_date") <= as_of))[
                "subject_key"
            ]
        )
        known = pl.from_arrow(
            store.connection.sql(
                "SELECT DISTINCT uscc AS subject_key FROM legal_entity WHERE reported_at < $c "
                "UNION SELECT DISTINCT person_key FROM natural_person WHERE reported_at < $c",
                params={"c": as_of},
            ).to_arrow_table()
        )
        f = known.filter(~pl.col("subject_key").is_in(list(excl))).join(oracle, on="subject_key")
        y = f["subject_key"].is_in(list(bad)).to_numpy()
        print(
            as_of,
            "rows",
            f.height,
            "bad",
            int(y.sum()),
            "latent-risk AUC",
            round(roc_auc_score(y, f["latent_risk"].to_numpy()), 4),
        )
