"""Evidently's side of ``bench/monitor_bench.py``: ``DataDriftPreset`` on the two Parquet files.

Runs in ``.venv-evidently`` (Evidently 0.7 needs pandas < 3)::

    .venv-evidently/bin/python bench/monitor_evidently.py REFERENCE.parquet CURRENT.parquet

Reads both files with ``pandas.read_parquet`` and wraps them in ``Dataset.from_pandas`` with an
explicit ``DataDefinition`` (``n*`` numerical, ``c*`` categorical; timed as ``load_seconds``),
then runs ``Report([DataDriftPreset()], include_tests=True)`` with Evidently's default methods
and thresholds (timed as ``seconds``; ``include_tests`` only attaches the per-column verdict
Evidently computes anyway). Prints one JSON object on stdout::

    {"seconds": ..., "load_seconds": ..., "import_seconds": ..., "version": "0.7.x",
     "columns": {column: {"method": ..., "method_name": ..., "score": ..., "threshold": ...,
                          "drifted": ...}},
     "drift_share": ..., "dataset_drift": ..., "peak_mb": ...}

``method`` is the registered stat-test name (``wasserstein``, ``jensenshannon``, ...),
``method_name`` Evidently's display name as the report shows it. The launcher measures the
process's peak RSS itself (``wait4``); ``peak_mb`` here is this process's own ``ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from monitor_data import CATEGORICAL, NUMERIC  # bench/ is on sys.path: this script's folder


def method_names() -> dict[str, str]:
    """Evidently's stat-test display names → their registered names."""
    from evidently.legacy.calculations.stattests import registry

    return {
        test.display_name: name
        for name, by_type in registry._registered_stat_tests.items()
        for test in by_type.values()
    }


def run(reference_path: Path, current_path: Path) -> dict[str, Any]:
    """Load, run the preset, and gather per-column scores from the snapshot."""
    started = time.perf_counter()
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imports = time.perf_counter() - started
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    reference = Dataset.from_pandas(pd.read_parquet(reference_path), data_definition=definition)
    current = Dataset.from_pandas(pd.read_parquet(current_path), data_definition=definition)
    load = time.perf_counter() - started
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    seconds = time.perf_counter() - started

    result = snapshot.dict()
    names = method_names()
    # each test's status: FAIL = drift detected (per column), drift share >= 0.5 (dataset)
    verdicts = {test["metric_config"]["metric_id"]: test["status"] for test in result["tests"]}
    columns: dict[str, dict[str, Any]] = {}
    drift_share, dataset_drift = None, None
    for metric in result["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            drift_share = metric["value"]["share"]
            dataset_drift = verdicts.get(metric["id"]) == "FAIL"
        elif kind == "ValueDrift":
            columns[config["column"]] = {
                "method": names.get(config["method"], config["method"]),
                "method_name": config["method"],
                "score": float(metric["value"]),
                "threshold": config["threshold"],
                "drifted": verdicts.get(metric["id"]) == "FAIL",
            }
    return {
        "seconds": seconds,
        "load_seconds": load,
        "import_seconds": imports,
        "version": evidently.__version__,
        "pandas_version": pd.__version__,
        "columns": columns,
        "drift_share": drift_share,
        "dataset_drift": dataset_drift,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str]) -> int:
    """Run on the two paths given; the JSON result on stdout."""
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(json.dumps(run(Path(argv[0]), Path(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
