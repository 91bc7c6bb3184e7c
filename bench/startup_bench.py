"""How fast shipyard's commands start, as a user runs them (fresh processes).

    .venv/bin/python bench/startup_bench.py [--runs 5]

Makes a template project (``shipyard init``, ``shipyard run``: the churn pipeline, promoted to
``prototype``), then times, each ``--runs`` times in a fresh process:

- ``shipyard --help``, ``shipyard models list``, ``shipyard runs list`` (start to exit);
- ``shipyard serve churn@prototype``: process start to ``/health/ready`` = 200, then stopped;
- a bare ``python -c "import sklearn"`` beside them: the floor any scikit-learn server pays.

Prints the median and range of each against issue 13's targets (0.5 s for the listings,
1.5 s to ready), with the median CPU time (user + system) the process used: on a shared
machine wall times follow the load, CPU times much less. The load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
TARGETS = {"--help": 0.5, "models list": 0.5, "runs list": 0.5, "serve ready": 1.5}


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


def serve_ready(cwd: Path) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "shipyard"), "serve", "churn@prototype", "--port", str(port), "--no-access-log"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("shipyard serve exited before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                    return time.perf_counter() - started, cpu_seconds(process.pid)
            except OSError:
                time.sleep(0.02)
    finally:
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
        cases: dict[str, Callable[[], tuple[float, float]]] = {
            "--help": lambda: timed([str(BIN / "shipyard"), "--help"], root),
            "models list": lambda: timed([str(BIN / "shipyard"), "models", "list"], root),
            "runs list": lambda: timed([str(BIN / "shipyard"), "runs", "list"], root),
            "serve ready": lambda: serve_ready(root),
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
