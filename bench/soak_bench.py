"""Soak ``shipyard serve`` at ~80 % of its capacity with valid, invalid and oversized requests.

Run from the repository root (``make bench-soak``)::

    .venv/bin/python bench/soak_bench.py                       # 10 minutes at 80 % of capacity
    .venv/bin/python bench/soak_bench.py --seconds 180 --rate 400 --connections 32
    .venv/bin/python bench/soak_bench.py --seconds 45 --check --max-rss-drift 25 \\
        --no-latency-check --idle-wait 0                       # the CI version (tests/bench)

What it does, on 127.0.0.1 in a temporary folder removed at the end:

1. fits the churn model of the serving benchmark (the project template's pipeline on a
   churn-like frame, ``serve_workload.train_churn``), registers it in a new project (SQLite,
   local artifacts) and promotes it to ``production``;
2. starts ``shipyard serve churn@production --prediction-log --max-body-bytes 64KiB
   --no-access-log`` as a fresh process (``serve_bench.server``: ``OMP_NUM_THREADS=1``, its
   own process group, stopped at the end) and checks that every protocol answers as the model
   does;
3. unless ``--rate`` is given, measures the server's capacity for the request mix
   (``soak_mix.py``: 85 % valid on the three protocols, 12 % invalid, 3 % above the body
   limit): ``--connections`` clients sending back to back for ``--capacity-seconds``; the soak
   then runs at ``--load`` (80 %) of it;
4. drives the server open loop at that rate for ``--seconds`` (``soak_load.py``: a lean
   HTTP/1.1 client on asyncio, in a process of its own, each request's latency counted from
   when it was due), sampling the server's RSS, open descriptors (``/proc/PID/fd``) and
   threads every few seconds, and its descriptors and threads at rest before and after;
5. prints requests by kind and status, latency of the valid requests, memory over time, and
   PASS/FAIL per criterion: no error on a valid request (any non-2xx, timeout or connection
   error counts), every invalid request refused with a 4xx and every oversized one with a
   413, no traceback in the server's log, p99 of valid requests <= 25 ms, RSS drift after the
   warm-up (the first 20 % of the run) <= ``--max-rss-drift`` %, no more descriptors at rest
   after the soak than before (the database's files apart: its connection pool opens
   connections as needed) and at most ``--thread-slack`` more threads (the thread pools start
   threads as needed; a leak adds one per request or connection). ``--check``: exit 1 when
   one fails.

Before the capacity run and the soak it waits (``--idle-wait``) for other processes to leave
the cores idle, and it reports the CPU they used during the soak ("others", in cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ByteSize, TypeAdapter
from serve_bench import check_shipyard, free_port, group_cpu_seconds, server
from serve_workload import bodies, train_churn
from shared_machine import add_idle_wait, busy_cpu_seconds, code_version, wait_for_idle
from soak_mix import MODEL, write_mix
from soak_report import Sample, Soak, report

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- the project and the server


def make_project(work: Path) -> tuple[Path, str, Any, Any]:
    """A new project holding the churn model at ``production``.

    Returns its folder, its SQLite database file, the model and the frame it was fitted on.
    """
    from sqlalchemy.engine import make_url
    from threadpoolctl import threadpool_limits

    from shipyard import Project

    with threadpool_limits(limits=1):
        model, frame = train_churn()
    with Project.init(work / "project", name="soak") as project:
        version = project.registry.register(MODEL, model, input_example=frame.head(200), trust=True)
        project.registry.promote(f"{MODEL}:{version.version}", "production", reason="soak")
        database = make_url(project.settings.database_url).database or ""
    return work / "project", database, model, frame


def sample(pid: int, at: float) -> Sample:
    """The server process now: resident memory, open descriptors, threads."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    threads = re.search(r"Threads:\s+(\d+)", status)
    if rss is None or threads is None:
        raise RuntimeError(f"/proc/{pid}/status has no VmRSS or Threads line")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(at, int(rss.group(1)) * 1024, fds, int(threads.group(1)))


def fd_targets(pid: int) -> tuple[str, ...]:
    """What each open descriptor of ``pid`` points at (any socket as ``socket``)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(fd)
            targets.append("socket" if target.startswith("socket:") else target)
    return tuple(sorted(targets))


def at_rest(pid: int, limit: float = 10.0) -> Sample:
    """A sample once the descriptor and thread counts hold still for a second (at most ``limit`` s).

    Called after the load generator exited: the server closes its side of the client's
    connections as it notices them gone.
    """
    deadline = time.monotonic() + limit
    last = now = sample(pid, 0.0)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sample(pid, 0.0)
        if (now.fds, now.threads) == (last.fds, last.threads):
            break
        last = now
    return replace(now, targets=fd_targets(pid))


# ---------------------------------------------------------------- load


def start_load(
    mix: Path, out: Path, base: str, connections: int, timing: Sequence[str]
) -> subprocess.Popen[bytes]:
    """``soak_load.py`` in its own process, ``timing`` its ``--closed`` or ``--rate`` options."""
    command = [sys.executable, str(HERE / "soak_load.py"), str(mix), str(out), "--base", base]
    command += ["--connections", str(connections), *timing]
    return subprocess.Popen(command)


def results(out: Path, process: subprocess.Popen[bytes]) -> tuple[dict[str, Any], Any]:
    """The load generator's summary and records, once it exited (raises if it failed)."""
    if process.wait() != 0:
        raise RuntimeError(f"the load generator exited with status {process.returncode}")
    summary = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    with np.load(out.with_suffix(".npz")) as records:
        return summary, {name: records[name] for name in records.files}


def closed_loop(mix: Path, work: Path, base: str, connections: int, seconds: float) -> float:
    """Requests answered per second by ``connections`` clients sending back to back."""
    out = work / "capacity"
    timing = ["--closed", str(seconds)]
    summary, records = results(out, start_load(mix, out, base, connections, timing))
    return float(np.count_nonzero(records["status"] > 0) / summary["seconds"])


def soak(
    mix: Path,
    work: Path,
    base: str,
    served: subprocess.Popen[bytes],
    rate: float,
    args: argparse.Namespace,
    database: str,
) -> Soak:
    """The open-loop run at ``rate``, the server sampled every ``args.sample_seconds``."""
    out, pid = work / "soak", served.pid
    before = at_rest(pid)
    cpu, busy, started = group_cpu_seconds(pid), busy_cpu_seconds(), time.time()
    timing = ["--rate", str(rate), "--seconds", str(args.seconds)]
    load = start_load(mix, out, base, args.connections, timing)
    taken: list[tuple[float, Sample]] = []
    while load.poll() is None:
        if served.poll() is not None:
            load.kill()
            raise RuntimeError(f"the server exited with status {served.returncode} mid-soak")
        taken.append((time.time(), sample(pid, 0.0)))
        time.sleep(args.sample_seconds)
    summary, records = results(out, load)
    wall = time.time() - started
    server_cpu = group_cpu_seconds(pid) - cpu
    others = busy_cpu_seconds() - busy - server_cpu - summary["client_cpu_s"]
    after = at_rest(pid)
    return Soak(
        records=records,
        summary=summary,
        rate=rate,
        samples=[replace(s, at=when - summary["start_wall"]) for when, s in taken],
        idle_before=before,
        idle_after=after,
        server_cores=server_cpu / wall,
        others_cores=max(others, 0.0) / wall,
        database=database,
    )


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    parser.add_argument("--rate", type=float, help="requests per second (default: measured)")
    parser.add_argument("--load", type=float, default=0.8, help="share of capacity to drive")
    parser.add_argument("--connections", type=int, default=64, help="most client connections")
    parser.add_argument(
        "--capacity-seconds",
        type=float,
        help="length of the capacity run (default: --seconds / 15, 3 to 15)",
    )
    parser.add_argument("--sample-seconds", type=float, help="default: 1 to 5, by --seconds")
    parser.add_argument("--max-body-bytes", default="64KiB", help="the server's body limit")
    parser.add_argument("--max-rss-drift", type=float, default=10.0, help="in %% (target 10)")
    parser.add_argument(
        "--no-latency-check",
        dest="check_latency",
        action="store_false",
        help="print the latency target's line as INFO, not as a criterion",
    )
    parser.add_argument(
        "--thread-slack",
        type=int,
        default=2,
        help="threads the server may add at rest over the soak (its pools start threads as "
        "needed, e.g. a second predict thread; a leak adds one per request or connection)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a criterion fails")
    add_idle_wait(parser, default=30.0)
    args = parser.parse_args(argv)
    if args.capacity_seconds is None:
        args.capacity_seconds = min(max(args.seconds / 15, 3.0), 15.0)
    if args.sample_seconds is None:
        args.sample_seconds = min(max(args.seconds / 60, 1.0), 5.0)
    args.max_body_bytes = int(TypeAdapter(ByteSize).validate_python(args.max_body_bytes))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its verdict; 1 with ``--check`` when a criterion failed."""
    args = parse_args(argv)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)

    say(f"code: {code_version()}")
    # A throwaway project: never a shared store named by the environment.
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        os.environ.pop(name, None)
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="shipyard-soak-") as tmp:
        work = Path(tmp)
        project, database, model, frame = make_project(work)
        say("churn model fitted, registered and promoted to production")
        mix = work / "mix.json"
        write_mix(mix, frame, args.max_body_bytes)
        port = free_port()
        command = [str(bindir / "shipyard"), "serve", f"{MODEL}@production", "--port", str(port)]
        command += ["--prediction-log", "--no-access-log"]
        command += ["--max-body-bytes", str(args.max_body_bytes)]
        base = f"http://127.0.0.1:{port}"
        log = work / "shipyard.log"
        say(" ".join(["shipyard", *command[1:]]))
        with server(command, f"{base}/health/ready", project, log, bindir) as process:
            row = frame.iloc[:1]
            check_shipyard(base, MODEL, bodies(row), model, row)
            say("ready; every protocol answers as the model does")
            if args.idle_wait > 0:
                wait_for_idle(args.idle_wait)
            if args.rate:
                rate = args.rate
                warm = closed_loop(mix, work, base, args.connections, 3.0)
                say(f"warm-up: {warm:,.0f} req/s closed loop for 3 s; soak at {rate:,.0f} req/s")
            else:
                capacity = closed_loop(mix, work, base, args.connections, args.capacity_seconds)
                rate = args.load * capacity
                say(
                    f"capacity: {capacity:,.0f} req/s ({args.connections} connections back to "
                    f"back for {args.capacity_seconds:.0f} s); soak at {args.load:.0%}: "
                    f"{rate:,.0f} req/s for {args.seconds:.0f} s"
                )
            if args.idle_wait > 0:
                wait_for_idle(args.idle_wait)
            try:
                result = soak(mix, work, base, process, rate, args, database)
            except RuntimeError:
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            say("soak done")
        result.tracebacks = log.read_text(errors="replace").count("Traceback")
        passed = report(
            result,
            max_drift=args.max_rss_drift,
            slack=args.thread_slack,
            check_latency=args.check_latency,
        )
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
