"""The soak benchmark's verdict: what the load generator saw and what the server's process did.

:func:`report` prints requests by kind and status, latency of the valid requests (overall and
per tenth of the run), the server's resident memory, descriptors and threads over time, and
one PASS/FAIL line per criterion; it returns whether every checked criterion passed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from soak_load import CONNECTION_ERROR, TIMEOUT

#: The serving target for one-row requests (docs/benchmarks.md): p99 at most this.
TARGET_P99_MS = 25.0
#: The share of the run taken as warm-up: the memory baseline is its last sample.
WARM_UP = 0.2


@dataclass
class Sample:
    """The server process at one moment (``at``: seconds since the soak's start)."""

    at: float
    rss: int
    fds: int
    threads: int
    #: what each descriptor is (sockets as ``socket``), taken at rest only
    targets: tuple[str, ...] = ()


@dataclass
class Soak:
    """Everything the report reads."""

    records: dict[str, np.ndarray]
    summary: dict[str, Any]
    rate: float
    samples: list[Sample]
    idle_before: Sample
    idle_after: Sample
    server_cores: float
    others_cores: float
    #: the metadata database's file (its -wal, -shm siblings too): its connection pool opens
    #: connections as threads need them, up to its size, so these are counted apart
    database: str = ""
    tracebacks: int = 0


@dataclass
class Criterion:
    """One line of the verdict; ``checked`` False: printed, not counted."""

    name: str
    passed: bool
    detail: str
    checked: bool = True

    def line(self) -> str:
        verdict = ("PASS" if self.passed else "FAIL") if self.checked else "INFO"
        return f"{verdict}  {self.name}: {self.detail}"


def _status_text(status: int) -> str:
    return {CONNECTION_ERROR: "conn-error", TIMEOUT: "timeout"}.get(status, str(status))


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _requests_table(soak: Soak) -> None:
    kinds = soak.summary["kinds"]
    pairs = zip(soak.records["kind"].tolist(), soak.records["status"].tolist(), strict=True)
    counts = Counter(pairs)
    print(f"\n{'kind':28} {'group':10} {'requests':>9}  statuses")
    for k, kind in enumerate(kinds):
        statuses = {s: n for (kk, s), n in counts.items() if kk == k}
        text = ", ".join(f"{_status_text(s)} x{n:,}" for s, n in sorted(statuses.items()))
        print(f"{kind['name']:28} {kind['group']:10} {sum(statuses.values()):9,}  {text}")


def _groups(soak: Soak) -> dict[str, np.ndarray]:
    groups = np.array([kind["group"] for kind in soak.summary["kinds"]])
    return {g: groups[soak.records["kind"]] == g for g in ("valid", "invalid", "oversized")}


def _latency(soak: Soak, valid: np.ndarray, check: bool) -> Criterion:
    seconds = soak.summary["planned_s"]
    latency = soak.records["latency"][valid] * 1000
    due = soak.records["due"][valid]
    p50, p99 = np.percentile(latency, [50, 99]) if latency.size else (np.nan, np.nan)
    windows = []
    for tenth in range(10):
        inside = (due >= seconds * tenth / 10) & (due < seconds * (tenth + 1) / 10)
        if inside.any():
            windows.append(f"{np.percentile(latency[inside], 99):.1f}")
    print(f"\nvalid requests' p99 per tenth of the run (ms): {' '.join(windows)}")
    return Criterion(
        "latency of valid requests",
        bool(p99 <= TARGET_P99_MS),
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 <= {TARGET_P99_MS:.0f} ms; counted "
        "from when each request was due)",
        checked=check,
    )


def _database_files(soak: Soak, sample: Sample) -> int:
    return sum(1 for t in sample.targets if soak.database and t.startswith(soak.database))


def _resources(soak: Soak, max_drift: float, slack: int) -> list[Criterion]:
    seconds = soak.summary["planned_s"]
    during = [s for s in soak.samples if 0 <= s.at <= seconds]
    if len(during) < 2:
        return [Criterion("server samples", False, f"only {len(during)} taken during the run")]
    warm = next((s for s in during if s.at >= seconds * WARM_UP), during[-1])
    end = during[-1]
    print(f"\nserver process, {len(during)} samples during the run (s: RSS MiB / fds / threads):")
    step = max(1, len(during) // 12)
    print(
        "  "
        + "  ".join(
            f"{s.at:.0f}: {s.rss / 2**20:.0f}/{s.fds}/{s.threads}"
            for s in during[::step] + ([end] if (len(during) - 1) % step else [])
        )
    )
    before, after = soak.idle_before, soak.idle_after
    added = Counter(after.targets) - Counter(before.targets)
    if added:
        print(f"descriptors open at rest after the soak, not before: {dict(added)}")
    database = _database_files(soak, before), _database_files(soak, after)
    peak = max(s.rss for s in during)
    drift = (end.rss - warm.rss) / warm.rss * 100
    return [
        Criterion(
            "RSS drift after warm-up",
            drift <= max_drift,
            f"{_mib(warm.rss)} at {warm.at:.0f} s (end of the first {WARM_UP:.0%}) -> "
            f"{_mib(end.rss)} at {end.at:.0f} s: {drift:+.1f} % (target <= {max_drift:.0f} %; "
            f"peak {_mib(peak)}; at rest before {_mib(before.rss)}, after {_mib(after.rss)})",
        ),
        Criterion(
            "open file descriptors",
            after.fds - database[1] <= before.fds - database[0],
            f"at rest {before.fds - database[0]} before the soak -> {after.fds - database[1]} "
            f"after it, besides the database's files ({database[0]} -> {database[1]}: its "
            f"connection pool opens connections as needed); under load {warm.fds} after warm-up, "
            f"{end.fds} at the end, the client's sockets and the database included",
        ),
        Criterion(
            "threads",
            after.threads <= before.threads + slack,
            f"at rest {before.threads} before the soak -> {after.threads} after it (target: "
            f"at most +{slack}; under load {warm.threads} after warm-up, {end.threads} at the "
            "end)",
        ),
    ]


def report(soak: Soak, *, max_drift: float, slack: int, check_latency: bool) -> bool:
    """Print the soak's results and verdict; True when every checked criterion passed.

    ``slack``: the threads the server may hold at rest after the soak beyond what it held
    before (its thread pools start threads as they are needed, up to their size; a leak adds
    one per request or connection, thousands in a soak).
    """
    records, summary = soak.records, soak.summary
    status = records["status"]
    seconds, drained = summary["planned_s"], summary["seconds"]
    sent = len(status)
    client_cores = summary["client_cpu_s"] / drained
    late_p99, late_max = np.percentile(records["late"], [99, 100]) * 1000
    print(
        f"\nopen loop: {sent:,} requests, {soak.rate:,.0f} per second for {seconds:.0f} s, the "
        f"last one answered after {drained:.1f} s; CPU used, in cores: the server "
        f"{soak.server_cores:.2f}, the client {client_cores:.2f}, other processes "
        f"{soak.others_cores:.2f}"
    )
    _requests_table(soak)
    groups = _groups(soak)
    valid, invalid, oversized = groups["valid"], groups["invalid"], groups["oversized"]
    bad_valid = valid & ((status < 200) | (status >= 300))
    bad_invalid = invalid & ((status < 400) | (status >= 500))
    bad_oversized = oversized & (status != 413)
    criteria = [
        Criterion(
            "errors on valid requests",
            not bad_valid.any(),
            f"{np.count_nonzero(bad_valid):,} of {np.count_nonzero(valid):,} not answered 2xx "
            "(a 5xx, 4xx, timeout or connection error each counts)",
        ),
        Criterion(
            "invalid requests refused with 4xx",
            not bad_invalid.any(),
            f"{np.count_nonzero(bad_invalid):,} of {np.count_nonzero(invalid):,} answered "
            "otherwise",
        ),
        Criterion(
            "oversized requests refused with 413",
            not bad_oversized.any(),
            f"{np.count_nonzero(bad_oversized):,} of {np.count_nonzero(oversized):,} answered "
            "otherwise",
        ),
        Criterion(
            "no traceback in the server's log",
            soak.tracebacks == 0,
            f"{soak.tracebacks} found",
        ),
        Criterion(
            "load generator on time",
            late_p99 <= 5,
            f"requests started {late_p99:.1f} ms after they were due at p99, {late_max:.1f} ms "
            "at most (the client's own delay; a wait for a free connection is in the latency)",
            checked=False,
        ),
        _latency(soak, valid & ~bad_valid, check_latency),
        *_resources(soak, max_drift, slack),
    ]
    print()
    for criterion in criteria:
        print(criterion.line())
    passed = all(c.passed for c in criteria if c.checked)
    print(f"\nsoak: {'PASS' if passed else 'FAIL'}")
    return passed
