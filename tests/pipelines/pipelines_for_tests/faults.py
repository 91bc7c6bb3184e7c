"""Steps that go wrong in each way the runner must survive. Each reads raw/seed."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard import step


@step(inputs={"seed": "raw/seed"}, outputs="processed/flaky", retries=2, retry_delay=0.05)
def flaky(seed: pd.DataFrame, counter: str = "", fail_times: int = 2) -> pd.DataFrame:
    path = Path(counter)
    with path.open("a") as handle:
        handle.write("attempt\n")
    count = len(path.read_text().splitlines())
    if count <= fail_times:
        raise RuntimeError(f"flaky failure {count}")
    return seed


@step(inputs={"seed": "raw/seed"}, outputs=["processed/broken", "artifacts/broken_model"])
def broken(seed: pd.DataFrame) -> dict[str, Any]:
    print("stdout before failing")
    print("details on stderr", file=sys.stderr)
    raise ValueError("column 'x' has negative values")


@step(inputs={"broken": "processed/broken"}, outputs="processed/after_broken")
def after_broken(broken: pd.DataFrame) -> pd.DataFrame:
    return broken


@step(inputs={"seed": "raw/seed"}, outputs="processed/slow", timeout=1.5)
def slow(seed: pd.DataFrame) -> pd.DataFrame:
    time.sleep(60)
    return seed


class _Bomb:
    """Kills its process while being pickled: after the first output was staged."""

    def __reduce__(self) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)
        return (dict, ())


@step(inputs={"seed": "raw/seed"}, outputs=["processed/half", "artifacts/bomb"])
def bomb(seed: pd.DataFrame) -> dict[str, Any]:
    return {"processed/half": seed, "artifacts/bomb": _Bomb()}


@step(inputs={"seed": "raw/seed"}, outputs="processed/sleepy")
def sleepy(seed: pd.DataFrame, marker: str = "") -> pd.DataFrame:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)
    return seed
