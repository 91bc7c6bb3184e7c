"""Benchmark ``shipyard serve``'s three protocols against MLServer and in-process predict.

Run from the repository root (needs ``wrk`` on PATH and the dev extras, which include MLflow;
``make bench`` also creates ``.venv-mlserver``, MLServer 1.7 in its own virtualenv)::

    .venv/bin/python bench/serve_bench.py                 # ~7 minutes
    .venv/bin/python bench/serve_bench.py --duration 5 --models churn --protocols v2 native

What it does, all on 127.0.0.1 and bounded in time, in a temporary folder removed at the end:

1. trains two models on seeded data: ``hgb``, a HistGradientBoostingClassifier (100
   iterations, 20 float features, fitted on a DataFrame; also batch_bench.py's model), and
   ``churn``, the project template's pipeline (``standard_training.build_model``) on a
   churn-like frame of 7 numeric and 4 text columns: the text imputed and one-hot encoded,
   then a HistGradientBoostingClassifier;
2. registers three versions in a shipyard project: ``hgb`` natively with an input example;
   ``hgb-mlflow``, the same model saved by ``mlflow.sklearn.save_model`` (cloudpickle, a
   signature, *no* input example) and imported with ``shipyard models import-mlflow
   --trust``; ``churn`` natively with an input example;
3. measures in-process ``predict_proba`` of each model on a one-row DataFrame, one native
   thread: the "raw predict" of the ratios (a server answering one row per request beats it
   only by batching);
4. starts one ``shipyard serve hgb hgb-mlflow churn --no-access-log`` (one process, the
   prediction log on as by default), checks that every protocol answers each model exactly
   as the model does, and drives each model and protocol with wrk, one row per request, at
   each ``--connections``: ``native`` ``POST /v1/models/NAME/predict`` (records), ``mlflow``
   ``POST /invocations?model=NAME`` (``dataframe_split``), ``v2`` ``POST
   /v2/models/NAME/infer`` (the body MLServer gets below);
5. starts MLServer (``mlserver start`` from ``.venv-mlserver``, default settings: the
   scikit-learn runtime on a joblib file of each model, written with this scikit-learn) and
   drives its v2 ``infer`` the same way: ``hgb`` as one FP64 ``[1, 20]`` tensor (numpy, its
   fastest path), ``churn`` with the pandas codec (one tensor per column, since the pipeline
   selects columns by name); MLServer answers ``predict`` only, shipyard labels and
   probabilities. Both servers run with ``OMP_NUM_THREADS=1`` (see :func:`server`);
6. prints one table and PASS/FAIL for the targets at 64 connections: every shipyard protocol
   at least 4x MLServer's req/s on the same model, with p99 <= 25 ms.

Before each wrk run it waits (``--idle-wait``, at most 60 s) for other processes to leave the
cores idle, and it reports the CPU they used meanwhile ("others", in cores: busy CPU of the
machine minus the server's and wrk's own). Every server is a subprocess in its own process
group, stopped at the end (also on errors).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serve_workload import bodies, raw_predict_us, register, train, train_churn, v2_body
from shared_machine import (
    add_idle_wait,
    busy_cpu_seconds,
    children_cpu_seconds,
    code_version,
    wait_for_idle,
)

ROOT = Path(__file__).resolve().parent.parent
MLSERVER_VENV = ROOT / ".venv-mlserver"
#: The target at 64 connections: req/s at least this many times MLServer's, and p99 at most.
TARGET_RATIO = 4.0
TARGET_P99_MS = 25.0
MODELS = ("hgb", "hgb-mlflow", "churn")
PROTOCOLS = ("native", "mlflow", "v2")


@dataclass
class Result:
    """One wrk run."""

    server: str
    model: str
    protocol: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    others: float


# ---------------------------------------------------------------- servers


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(
    command: Sequence[str], url: str, cwd: Path, log: Path, path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until ``url`` answers 200 (at most 180 s), then stop its process group.

    ``path`` goes first on ``PATH``; native thread pools get one thread (``OMP_NUM_THREADS=1``,
    as ``shipyard serve --model-threads 1`` does for its own): two OpenMP threads per predict
    call fighting the server for two cores make single-row latency several times worse.
    """
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{path}{os.pathsep}{os.environ['PATH']}",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{command[0]} exited early:\n{tail}")
                try:
                    with urllib.request.urlopen(url, timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready after 180 s; see {log}")
                time.sleep(0.3)
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def group_cpu_seconds(group: int) -> float:
    """CPU seconds used so far by the live processes of process group ``group``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def post(url: str, body: str) -> Any:
    """POST a JSON body and return the JSON answer (raises on a non-2xx status)."""
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def check_shipyard(base: str, name: str, body: dict[str, str], model: Any, row: Any) -> None:
    """Every protocol answers ``row`` as the model does (labels and probabilities)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        labels, proba = model.predict(row).tolist(), model.predict_proba(row)
    native = post(f"{base}/v1/models/{name}/predict", body["native"])
    mlflow = post(f"{base}/invocations?model={name}", body["mlflow"])
    v2 = {
        o["name"]: o["data"] for o in post(f"{base}/v2/models/{name}/infer", body["v2"])["outputs"]
    }
    same = (
        native["predictions"] == mlflow["predictions"] == v2["predict"] == labels
        and np.array_equal(np.asarray(native["probabilities"]), proba)
        and np.array_equal(np.asarray(v2["predict_proba"]).reshape(proba.shape), proba)
    )
    if not same:
        raise RuntimeError(
            f"{name}: the protocols' answers differ from the model's: "
            f"{native}, {mlflow}, {v2}, model {labels} {proba.tolist()}"
        )


def input_modes(base: str) -> dict[str, str]:
    """Each served model's ``input_mode`` (``GET /v1/models``)."""
    with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as answer:
        listing = json.loads(answer.read())
    return {m["name"]: m["input_mode"] for m in listing["models"]}


def write_mlserver_models(
    folder: Path, models: dict[str, Any], ports: tuple[int, int, int]
) -> None:
    """MLServer's settings and one model folder per model (a joblib file, the sklearn runtime)."""
    import joblib

    http, grpc, metrics = ports
    settings = {"http_port": http, "grpc_port": grpc, "metrics_port": metrics, "host": "127.0.0.1"}
    (folder / "settings.json").write_text(json.dumps(settings))
    for name, model in models.items():
        (folder / name).mkdir()
        joblib.dump(model, folder / name / "model.joblib")
        config = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (folder / name / "model-settings.json").write_text(json.dumps(config))


# ---------------------------------------------------------------- load


def wrk(url: str, body: str, connections: int, seconds: int, workdir: Path) -> tuple[float, ...]:
    """(req/s, p50 ms, p99 ms, errors) of a wrk run POSTing ``body`` as JSON."""
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        'wrk.headers["Content-Type"] = "application/json"\n',
        encoding="utf-8",
    )
    threads = 1 if connections < 4 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    text = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", text).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", text).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", text))
    return rps, p50, p99, errors


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def drive(
    label: tuple[str, str, str],
    url: str,
    body: str,
    group: int,
    args: argparse.Namespace,
    workdir: Path,
) -> list[Result]:
    """Warm up, then one wrk run per connection count, each after waiting for idle cores."""
    wrk(url, body, 4, 2, workdir)
    results = []
    for connections in args.connections:
        if args.idle_wait > 0:
            wait_for_idle(args.idle_wait)
        busy, own, served = busy_cpu_seconds(), children_cpu_seconds(), group_cpu_seconds(group)
        started = time.perf_counter()
        rps, p50, p99, errors = wrk(url, body, connections, args.duration, workdir)
        wall = time.perf_counter() - started
        mine = (children_cpu_seconds() - own) + (group_cpu_seconds(group) - served)
        others = max(busy_cpu_seconds() - busy - mine, 0.0) / wall
        result = Result(*label, connections, rps, p50, p99, int(errors), others)
        results.append(result)
        print(
            f"  {label[0]:8} {label[1]:10} {label[2]:6} c={connections:<3} {rps:8,.0f} req/s  "
            f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  errors {errors:.0f}  "
            f"others {others:.2f} cores",
            flush=True,
        )
    return results


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--skip-mlserver", action="store_true", help="do not measure MLServer")
    add_idle_wait(parser)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not args.skip_mlserver and not mlserver.exists():
        print(f"{mlserver} is missing: run `make {MLSERVER_VENV.name}/bin/python`", file=sys.stderr)
        return 2
    print(f"code: {code_version()}")
    hgb, frame = train()
    churn, churn_frame = train_churn()
    natives = {"hgb": hgb, "hgb-mlflow": hgb, "churn": churn}
    rows = {"hgb": frame.iloc[:1], "hgb-mlflow": frame.iloc[:1], "churn": churn_frame.iloc[:1]}
    raw_us = {name: raw_predict_us(natives[name], rows[name]) for name in ("hgb", "churn")}
    raw_us["hgb-mlflow"] = raw_us["hgb"]
    for name in ("hgb", "churn"):
        print(f"in-process predict_proba, {name}, 1-row DataFrame: {raw_us[name]:.0f} us per call")
    bindir = Path(sys.executable).parent
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        register(work, hgb, frame, churn, churn_frame, bindir)
        port = free_port()
        command = [
            str(bindir / "shipyard"),
            "serve",
            *args.models,
            "--port",
            str(port),
            "--no-access-log",
        ]
        base = f"http://127.0.0.1:{port}"
        print("shipyard serve ...", flush=True)
        log = work / "shipyard.log"
        with server(command, f"{base}/health/ready", work / "project", log, bindir) as process:
            modes = input_modes(base)
            print(f"input modes: {modes}")
            for name in args.models:
                body = bodies(rows[name])
                check_shipyard(base, name, body, natives[name], rows[name])
                urls = {
                    "native": f"{base}/v1/models/{name}/predict",
                    "mlflow": f"{base}/invocations?model={name}",
                    "v2": f"{base}/v2/models/{name}/infer",
                }
                for protocol in args.protocols:
                    label = ("shipyard", name, protocol)
                    results += drive(label, urls[protocol], body[protocol], process.pid, args, work)
        unwarmed = [line for line in log.read_text().splitlines() if "unwarmed" in line]
        if unwarmed:
            print("shipyard log: " + " | ".join(unwarmed))
        if not args.skip_mlserver:
            results += run_mlserver(work, mlserver, natives, rows, args)
    report(results, raw_us, modes)
    return 0


def run_mlserver(
    work: Path,
    mlserver: Path,
    natives: dict[str, Any],
    rows: dict[str, pd.DataFrame],
    args: argparse.Namespace,
) -> list[Result]:
    """MLServer serving ``hgb`` and ``churn`` (joblib files, the sklearn runtime), driven."""
    folder = work / "mlserver"
    folder.mkdir()
    names = sorted({"churn" if name == "churn" else "hgb" for name in args.models})
    port = free_port()
    write_mlserver_models(folder, {n: natives[n] for n in names}, (port, free_port(), free_port()))
    base = f"http://127.0.0.1:{port}"
    print("mlserver start ...", flush=True)
    results: list[Result] = []
    command = [str(mlserver), "start", str(folder)]
    with server(
        command, f"{base}/v2/health/ready", folder, work / "mlserver.log", mlserver.parent
    ) as process:
        for name in names:
            url = f"{base}/v2/models/{name}/infer"
            body = v2_body(rows[name], mlserver=True)
            answer = post(url, body)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                expected = natives[name].predict(rows[name]).tolist()
            if answer["outputs"][0]["data"] != expected:
                raise RuntimeError(f"MLServer answers {answer} for {name}, the model {expected}")
            results += drive(("mlserver", name, "v2"), url, body, process.pid, args, work)
    return results


def report(results: list[Result], raw_us: dict[str, float], modes: dict[str, str]) -> None:
    """Print the table: each run, ratios against MLServer and raw predict, and the targets."""
    peer = {(r.model, r.connections): r for r in results if r.server == "mlserver"}
    print()
    print(
        "| model (input mode) | server | protocol | connections | req/s | p50 ms | p99 ms "
        "| errors | vs MLServer | vs raw predict | others' CPU, cores |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        other = peer.get(("hgb" if r.model == "hgb-mlflow" else r.model, r.connections))
        versus = f"{r.rps / other.rps:.1f}x" if other and r.server != "mlserver" else ""
        model = f"{r.model} ({modes.get(r.model, '-')})" if r.server == "shipyard" else r.model
        print(
            f"| {model} | {r.server} | {r.protocol} | {r.connections} | {r.rps:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {versus} "
            f"| {r.rps * raw_us[r.model] / 1e6:.2f}x | {r.others:.2f} |"
        )
    for name in ("hgb", "churn"):
        if name in raw_us:
            calls = 1e6 / raw_us[name]
            print(
                f"| {name}: in-process predict_proba, 1-row DataFrame | - | - | 1 "
                f"| {calls:,.0f} calls/s | {raw_us[name] / 1000:.2f} | | | | 1.00x | |"
            )
    print()
    for r in results:
        if r.server != "shipyard" or r.connections != 64:
            continue
        other = peer.get(("hgb" if r.model == "hgb-mlflow" else r.model, 64))
        ratio = r.rps / other.rps if other else float("nan")
        holds = ratio >= TARGET_RATIO and r.p99_ms <= TARGET_P99_MS and not r.errors
        print(
            f"target {r.model} {r.protocol} c=64: >= {TARGET_RATIO:.0f}x MLServer and p99 <= "
            f"{TARGET_P99_MS:.0f} ms: {'PASS' if holds else 'FAIL'} ({r.rps:,.0f} req/s, "
            f"{ratio:.1f}x, p99 {r.p99_ms:.2f} ms)"
        )


if __name__ == "__main__":
    sys.exit(main())
