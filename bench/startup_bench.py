"""How fast shipyard's commands start, as a user runs them (fresh processes).

    .venv/bin/python bench/startup_bench.py [--runs 5]

Makes a template project (``shipyard init``, ``shipyard run``: the churn pipeline, promoted to
``prototype``), then times, each ``--runs`` times in a fresh process:

- ``shipyard --help``, ``shipyard models list``, ``shipyard runs list`` (start to exit);
- ``shipyard serve churn@prototype``: process start to ``/health/ready`` = 200, then stopped;
- the same server killed with SIGKILL under load (four clients posting one-row predictions)
  and started again on its port: restart to ready (issue 14's 2 s);
- a bare ``python -c "import sklearn"`` beside them: the floor any scikit-learn server pays.

Prints the median and range of each against the issues' targets (0.5 s for the listings, 1.5 s
to ready, 2 s to ready again after a kill), with the median CPU time (user + system) the process
used: on a shared machine wall times follow the load, CPU times much less. The load average is
printed too.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
TARGETS = {
    "--help": 0.5,
    "models list": 0.5,
    "runs list": 0.5,
    "serve ready": 1.5,
    "ready after kill -9": 2.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(cwd: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "shipyard"), "serve", "churn@prototype", "--port", str(port), "--no-access-log"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_ready(process: subprocess.Popen[bytes], port: int, started: float) -> tuple[float, float]:
    """Wall seconds from ``started`` to ``/health/ready`` = 200, and the CPU seconds used."""
    while True:
        if process.poll() is not None:
            raise RuntimeError("shipyard serve exited before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                return time.perf_counter() - started, cpu_seconds(process.pid)
        except OSError:
            time.sleep(0.02)


def serve_ready(cwd: Path) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = start_server(cwd, port)
    try:
        return wait_ready(process, port, started)
    finally:
        process.terminate()
        process.wait(timeout=60)


def one_row(cwd: Path) -> bytes:
    """A one-row body for ``POST /v1/models/churn/predict`` from the template's data."""
    import pandas as pd

    from shipyard import Project

    with Project(cwd) as project:
        columns = project.registry.get("churn@prototype").signature.columns
    frame = pd.read_csv(cwd / "data" / "customers.csv").head(1)[columns]
    return str(frame.to_json(orient="records")).encode()


def ready_after_kill(cwd: Path, body: bytes) -> tuple[float, float]:
    """Four clients posting one-row predictions; after 1 s the server is killed with
    SIGKILL and started again on its port while they keep posting: start to ready."""
    port = free_port()
    first = start_server(cwd, port)
    wait_ready(first, port, time.perf_counter())
    url = f"http://127.0.0.1:{port}/v1/models/churn/predict"
    stop = threading.Event()

    def post() -> None:
        while not stop.is_set():
            request = urllib.request.Request(
                url, body, {"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    answer.read()
            except (OSError, http.client.HTTPException):  # refused, reset, cut off mid-answer
                time.sleep(0.01)

    clients = [threading.Thread(target=post) for _ in range(4)]
    for client in clients:
        client.start()
    second = None
    try:
        time.sleep(1.0)
        first.kill()
        first.wait(timeout=60)
        started = time.perf_counter()
        second = start_server(cwd, port)
        return wait_ready(second, port, started)
    finally:
        stop.set()
        for client in clients:
            client.join()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "startup"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        os.environ.clear()
        os.environ.update(env)
        subprocess.run([str(BIN / "shipyard"), "init", str(root)], check=True, capture_output=True)
        subprocess.run([str(BIN / "shipyard"), "run"], cwd=root, check=True, capture_output=True)
        body = one_row(root)
        cases: dict[str, Callable[[], tuple[float, float]]] = {
            "--help": lambda: timed([str(BIN / "shipyard"), "--help"], root),
            "models list": lambda: timed([str(BIN / "shipyard"), "models", "list"], root),
            "runs list": lambda: timed([str(BIN / "shipyard"), "runs", "list"], root),
            "serve ready": lambda: serve_ready(root),
            "ready after kill -9": lambda: ready_after_kill(root, body),
            "import sklearn (floor)": lambda: timed([sys.executable, "-c", "import sklearn"], root),
        }
        for case in cases.values():
            case()  # warm the OS cache and the bytecode
        print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min)")
        print(f"{'command':<24} {'median s':>9} {'range s':>14} {'cpu s':>6} {'target':>8}")
        for name, case in cases.items():
            measured = [case() for _ in range(args.runs)]
            seconds = [wall for wall, _ in measured]
            target = TARGETS.get(name)
            verdict = (
                ""
                if target is None
                else ("met" if statistics.median(seconds) <= target else "not met")
            )
            print(
                f"{name:<24} {statistics.median(seconds):>9.2f} "
                f"{min(seconds):>6.2f}-{max(seconds):<6.2f} "
                f"{statistics.median(cpu for _, cpu in measured):>6.2f} "
                f"{'' if target is None else f'{target:.1f} s':>8} {verdict}"
            )
        print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
