"""What every benchmark needs on a machine shared with other work: idle cores and a record.

The machine has two cores that other processes (tests, other sessions' jobs) use too, and a
measurement taken while they run says little. :func:`wait_for_idle` waits, bounded, until
the other processes leave the cores idle; :func:`busy_cpu_seconds` and
:func:`children_cpu_seconds` let a benchmark report how much CPU others used while it ran;
:func:`add_idle_wait` is the option that bounds the wait; :func:`code_version` names the code
measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from pathlib import Path


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_idle(limit: float, busy: float = 0.3) -> float:
    """Wait (at most ``limit`` s) until other processes use < ``busy`` cores; the load seen."""
    deadline = time.monotonic() + limit
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        cores = busy_cpu_seconds() - before
        if cores < busy or time.monotonic() > deadline:
            return cores
        time.sleep(2.0)


def add_idle_wait(parser: argparse.ArgumentParser, default: float = 60.0) -> None:
    """The ``--idle-wait`` option: how long to wait for idle cores before each run."""
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=default,
        help="before each run, wait up to this many seconds for other processes to use "
        "< 0.3 cores (0: do not wait)",
    )


def code_version() -> str:
    """The commit measured, and the files of ``src`` that differ from it (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in status.splitlines()]
    return f"{head}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
