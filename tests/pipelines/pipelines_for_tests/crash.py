"""Two steps for the crash tests: first → second, where second can be held to be killed.

``second`` writes its pid to ``marker`` (when given) and then sleeps ``hold`` seconds, so
a test can kill the process running the pipeline while the step is under way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from shipyard import step


@step(inputs={"seed": "raw/seed"}, outputs="processed/first")
def first(seed: pd.DataFrame) -> pd.DataFrame:
    return seed.assign(y=seed["x"] * 2)


@step(inputs={"first": "processed/first"}, outputs="processed/second")
def second(first: pd.DataFrame, marker: str = "", hold: float = 0.0) -> pd.DataFrame:
    if marker:
        Path(marker).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(hold)
    return first.assign(z=first["y"] + 1)
