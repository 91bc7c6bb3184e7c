"""A diamond: source → (double, total) → report; tests copy it to a project's pipelines/."""

from __future__ import annotations

import logging
import os
import time

import pandas as pd

from shipyard import step


@step(outputs="raw/numbers")
def source(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"x": list(range(n))})


@step(inputs={"numbers": "raw/numbers"}, outputs="processed/doubled")
def double(numbers: pd.DataFrame, factor: int = 2) -> pd.DataFrame:
    time.sleep(0.3)
    return numbers * factor


@step(inputs={"numbers": "raw/numbers"}, outputs="artifacts/total")
def total(numbers: pd.DataFrame) -> int:
    time.sleep(0.3)
    return int(numbers["x"].sum())


@step(
    inputs={"doubled": "processed/doubled", "total": "artifacts/total"},
    outputs="processed/report",
)
def report(doubled: pd.DataFrame, total: int, label: str = "sum") -> pd.DataFrame:
    print(f"report of {len(doubled)} rows")
    logging.getLogger("report").info("total is %s", total)
    os.system("echo from-a-subprocess")  # a child process's output is captured too
    return doubled.assign(**{label: total})
