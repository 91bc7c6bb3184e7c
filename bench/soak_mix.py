"""The soak benchmark's request mix: valid, invalid and oversized requests on every protocol.

:func:`request_kinds` builds, from rows of the churn frame, a few bodies for each kind of
request; :func:`write_mix` stores them for ``bench/soak_load.py``. The kinds and their shares:

- **valid** (85 %), one row each unless said: native ``POST /v1/models/churn/predict``
  (records; also 10 rows at once), MLflow ``POST /invocations`` as ``dataframe_split``,
  ``dataframe_records`` and CSV, OIP v2 ``POST /v2/models/churn/infer`` (one tensor per
  column). Each must be answered 200.
- **invalid** (12 %): a missing column (native, v2 tensor), text in an integer column
  (MLflow), a CSV without one column, truncated JSON (native, MLflow), an unknown model. Each
  must be answered 4xx.
- **oversized** (3 %): a body above the server's ``--max-body-bytes`` on each protocol. Each
  must be answered 413.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from serve_workload import bodies

MODEL = "churn"
NATIVE = f"/v1/models/{MODEL}/predict"
MLFLOW = "/invocations"
V2 = f"/v2/models/{MODEL}/infer"
JSON = "application/json"
CSV = "text/csv"
#: Bodies prepared per kind (each request picks one at random).
VARIANTS = 32


def _kind(
    name: str, group: str, path: str, weight: float, variants: list[str], content_type: str = JSON
) -> dict[str, Any]:
    return {
        "name": name,
        "group": group,
        "path": path,
        "content_type": content_type,
        "weight": weight,
        "bodies": variants,
    }


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(rows.to_json(orient="records"))
    return records


def _oversized(frame: pd.DataFrame, limit: int) -> dict[str, str]:
    """One body per protocol, each a little more than 1.2 times ``limit`` bytes."""
    big = {}
    for protocol in ("native", "mlflow", "v2"):
        rows = 1
        while len(body := bodies(frame.iloc[:rows])[protocol]) < 1.2 * limit:
            rows = int(rows * 1.3 * limit / len(body)) + 1
        big[protocol] = body
    return big


def request_kinds(frame: pd.DataFrame, max_body_bytes: int) -> list[dict[str, Any]]:
    """Every kind of request of the soak, with :data:`VARIANTS` bodies each (seeded rows)."""
    picks = [frame.sample(1, random_state=seed) for seed in range(VARIANTS)]
    tens = [frame.sample(10, random_state=seed) for seed in range(VARIANTS)]
    per_row = [bodies(row) for row in picks]
    numbers = [c for c in frame.columns if frame[c].dtype.kind in "iu"]
    kinds = [
        _kind("native", "valid", NATIVE, 0.20, [b["native"] for b in per_row]),
        _kind("native 10 rows", "valid", NATIVE, 0.05, [bodies(t)["native"] for t in tens]),
        _kind("mlflow split", "valid", MLFLOW, 0.15, [b["mlflow"] for b in per_row]),
        _kind(
            "mlflow records",
            "valid",
            MLFLOW,
            0.15,
            [json.dumps({"dataframe_records": _records(row)}) for row in picks],
        ),
        _kind("mlflow csv", "valid", MLFLOW, 0.15, [r.to_csv(index=False) for r in picks], CSV),
        _kind("v2", "valid", V2, 0.15, [b["v2"] for b in per_row]),
    ]
    missing = [row.drop(columns=[frame.columns[i % len(frame.columns)]]) for i, row in
               enumerate(picks)]  # fmt: skip
    texts = [row.astype(dict.fromkeys(numbers, object)) for row in picks]
    for i, row in enumerate(texts):
        row.loc[:, numbers[i % len(numbers)]] = "many"
    invalid = 0.12 / 7
    kinds += [
        _kind("native missing column", "invalid", NATIVE, invalid,
              [bodies(row)["native"] for row in missing]),
        _kind("v2 missing tensor", "invalid", V2, invalid, [bodies(row)["v2"] for row in missing]),
        _kind("mlflow text in int column", "invalid", MLFLOW, invalid,
              [json.dumps({"dataframe_records": _records(row)}) for row in texts]),
        _kind("mlflow csv missing column", "invalid", MLFLOW, invalid,
              [row.to_csv(index=False) for row in missing], CSV),
        _kind("native bad json", "invalid", NATIVE, invalid,
              [b["native"][: len(b["native"]) // 2] for b in per_row]),
        _kind("mlflow bad json", "invalid", MLFLOW, invalid,
              [b["mlflow"][: len(b["mlflow"]) // 2] for b in per_row]),
        _kind("unknown model", "invalid", "/v1/models/no-such-model/predict", invalid,
              [b["native"] for b in per_row]),
    ]  # fmt: skip
    big = _oversized(frame, max_body_bytes)
    kinds += [
        _kind(f"{protocol} oversized", "oversized", path, 0.01, [big[protocol]])
        for protocol, path in (("native", NATIVE), ("mlflow", MLFLOW), ("v2", V2))
    ]
    return kinds


def write_mix(path: Path, frame: pd.DataFrame, max_body_bytes: int) -> list[dict[str, Any]]:
    """Write the mix to ``path`` (JSON) and return its kinds."""
    kinds = request_kinds(frame, max_body_bytes)
    path.write_text(json.dumps({"kinds": kinds}), encoding="utf-8")
    return kinds
