"""How fast shipyard's commands start, as a user runs them (fresh processes).

    .venv/bin/python bench/startup_bench.py [--runs 5]

Makes a template project (``shipyard init``, ``shipyard run``: the churn pipeline, promoted to
``prototype``), then times, each ``--runs`` times in a fresh process:

- ``shipyard --help``, ``shipyard models list``, ``shipyard runs list`` (start to exit);
- ``shipyard serve churn@prototype``: process start to ``/health/ready`` = 200, then stopped;
- a bare ``python -c "import sklearn"`` beside them: the floor any scikit-learn server pays.

Prints the median and range of each against issue 13's targets (0.5 s for the listings,
1.5 s to ready).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
TARGETS = {"--help": 0.5, "models list": 0.5, "runs list": 0.5, "serve ready": 1.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def serve_ready(cwd: Path) -> float:
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
                    return time.perf_counter() - started
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
        cases = {
            "--help": lambda: timed([str(BIN / "shipyard"), "--help"], root),
            "models list": lambda: timed([str(BIN / "shipyard"), "models", "list"], root),
            "runs list": lambda: timed([str(BIN / "shipyard"), "runs", "list"], root),
            "serve ready": lambda: serve_ready(root),
            "import sklearn (floor)": lambda: timed([sys.executable, "-c", "import sklearn"], root),
        }
        for case in cases.values():
            case()  # warm the OS cache and the bytecode
        print(f"{'command':<24} {'median s':>9} {'range s':>14} {'target':>8}")
        for name, case in cases.items():
            seconds = [case() for _ in range(args.runs)]
            target = TARGETS.get(name)
            verdict = (
                ""
                if target is None
                else ("met" if statistics.median(seconds) <= target else "not met")
            )
            print(
                f"{name:<24} {statistics.median(seconds):>9.2f} "
                f"{min(seconds):>6.2f}-{max(seconds):<6.2f} "
                f"{'' if target is None else f'{target:.1f} s':>8} {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
