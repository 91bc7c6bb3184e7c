"""Two steps for the CLI tests: make → check (check fails when limit is below the row count)."""

from __future__ import annotations

import sys

import pandas as pd

from shipyard import step


@step(outputs="raw/items")
def make(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"item": list(range(n))})


@step(inputs={"items": "raw/items"}, outputs="processed/checked")
def check(items: pd.DataFrame, limit: int = 100) -> pd.DataFrame:
    if len(items) > limit:
        print(f"{len(items)} rows exceed the limit", file=sys.stderr)
        raise ValueError(f"too many rows: {len(items)} > {limit}")
    return items
