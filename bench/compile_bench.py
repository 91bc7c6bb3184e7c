"""In-process cost of one served batch, with and without ``--compile onnx``.

Run from the repository root::

    .venv/bin/python bench/compile_bench.py

Trains four classifiers on 5,000 seeded rows of 20 float features (HistGradientBoosting and
LightGBM / XGBoost with 100 trees, a scaled logistic regression), registers each in a
temporary project, builds the server's ``ServingModel`` twice (as registered, and with
``compile_to="onnx"``), and times ``run_batch`` — what the micro-batcher calls per batch —
on one row and on 64 rows, with one native thread. It also reports how many of the 5,000
labels the two paths agree on. Nothing here is an HTTP measurement: see serve_bench.py.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import xgboost
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from shipyard import Project, Settings
from shipyard.serving.columns import records_to_columns
from shipyard.serving.served import ServingModel


def _timed(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    for _ in range(50):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds) * 1e6), float(np.percentile(seconds, 99) * 1e6)


def _measure(
    name: str,
    project: Project,
    info: Any,
    executor: ThreadPoolExecutor,
    frame: pd.DataFrame,
    compile_to: str | None,
) -> np.ndarray:
    served = ServingModel(project.registry.load(info.ref), info, executor, compile_to=compile_to)
    served.warm_up()
    one = served.validate(records_to_columns(frame.iloc[100:101].to_dict("records")))
    many = served.validate(records_to_columns(frame.iloc[:64].to_dict("records")))
    for label, columns, repeats in (("1 row", one, 3000), ("64 rows", many, 500)):
        p50, p99 = _timed(lambda c=columns: served.run_batch(c), repeats)
        print(f"{name:7} {served.mode:7} {label:8} p50 {p50:8.1f} us  p99 {p99:8.1f} us")
    every = served.validate(records_to_columns(frame.to_dict("records")))
    return np.asarray(served.run_batch(every).predictions)


def main() -> None:
    """Print one line per model, path and batch size, then the label agreement."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(5000, 20)), columns=[f"f{i}" for i in range(20)])
    target = (frame.f0 + frame.f1 * frame.f2 > 0).astype(int).to_numpy()
    models = {
        "hgb": HistGradientBoostingClassifier(max_iter=100, random_state=0),
        "linear": make_pipeline(StandardScaler(), LogisticRegression()),
        "lgbm": lightgbm.LGBMClassifier(n_estimators=100, verbose=-1),
        "xgb": xgboost.XGBClassifier(n_estimators=100),
    }
    executor = ThreadPoolExecutor(1)
    with tempfile.TemporaryDirectory() as scratch, threadpool_limits(limits=1):
        root = Path(scratch)
        (root / "shipyard.toml").write_text("")
        with Project(settings=Settings.load(root, environ={})) as project:
            for name, model in models.items():
                model.fit(frame, target)
                project.registry.register(name, model, input_example=frame.iloc[:50], trust=True)
                info = project.registry.get(f"{name}:1")
                labels = {
                    compile_to: _measure(name, project, info, executor, frame, compile_to)
                    for compile_to in (None, "onnx")
                }
                agree = float((labels[None] == labels["onnx"]).mean())
                print(f"{name:7} labels agree on {agree:.2%} of {len(frame)} rows")
    executor.shutdown()


if __name__ == "__main__":
    main()
