"""How long ``POST /invocations`` takes to read a ``text/csv`` body, with and without pandas.

    .venv/bin/python bench/csv_bench.py [--repeat 500]

Fits the churn model of the serving benchmark (``serve_workload.train_churn``: 7 numeric and
4 text columns, some values missing), writes 1, 10, 100 and 1,000 of its rows with
``DataFrame.to_csv`` (what MLflow's clients send), and times in this process, one call at a
time, the two ways the server reads such a body: ``csv_columns`` (the standard library's
reader for a small plain body, :mod:`shipyard.serving.protocols.csv_small`) and
``pandas_csv_columns`` (``pandas.read_csv``, as MLflow's scoring server reads it). Checks
that both give the same columns, and prints microseconds per body and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from dataclasses import dataclass

import numpy as np
import pandas as pd
from serve_workload import train_churn

from shipyard.core.schema import Signature
from shipyard.serving.protocols.csv_small import small_csv_columns
from shipyard.serving.protocols.mlflow import csv_columns, pandas_csv_columns


@dataclass(frozen=True)
class Model:
    """What ``csv_columns`` reads of a served model."""

    signature: Signature


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500, help="calls timed per body")
    args = parser.parse_args()
    _, frame = train_churn()
    model = Model(Signature.infer(frame))
    print(f"{'rows':>6} {'bytes':>7} {'read here':>10} {'pandas us':>10} {'ratio':>6}  path")
    for rows in (1, 10, 100, 1000):
        body = frame.head(rows).to_csv(index=False).encode()
        here = csv_columns(body, model)
        theirs = pandas_csv_columns(body, model.signature)
        assert list(here) == list(theirs)
        for name in here:
            assert pd.Series(here[name]).equals(pd.Series(np.asarray(theirs[name])))
        ours = timeit.timeit(lambda b=body: csv_columns(b, model), number=args.repeat)
        pandas = timeit.timeit(
            lambda b=body: pandas_csv_columns(b, model.signature), number=args.repeat
        )
        small = small_csv_columns(body, model.signature) is not None
        print(
            f"{rows:>6} {len(body):>7} {ours / args.repeat * 1e6:>10.1f} "
            f"{pandas / args.repeat * 1e6:>10.1f} {pandas / ours:>5.1f}x  "
            f"{'standard csv' if small else 'pandas (too big for csv_small)'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
