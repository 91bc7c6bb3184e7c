"""The monitoring benchmark's tables and verdicts (``bench/monitor_bench.py`` prints them)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

TARGET_SECONDS = 3.0
TARGET_MB = 500.0
TARGET_DIFF = 1e-6
COMMAND_SECONDS = 3.0  # issue 13: the whole command, as a fresh process
COMMAND_MB = 900.0
MODEL = "drift:1"
METHODS = {
    "wasserstein": "wasserstein",
    "wassersteindistancenormed": "wasserstein",
    "wassersteinnormed": "wasserstein",
    "jensenshannon": "jensenshannon",
    "jensenshannondistance": "jensenshannon",
    "js": "jensenshannon",
    "ks": "ks",
    "kspvalue": "ks",
    "chisquare": "chisquare",
    "chisquarepvalue": "chisquare",
    "chi2": "chisquare",
    "z": "z",
    "ztestpvalue": "z",
    "psi": "psi",
}


def canonical(method: str | None) -> str:
    """One name per statistic, whatever the tool calls it."""
    key = "".join(ch for ch in str(method).lower() if ch.isalnum())
    return METHODS.get(key, str(method))


# ---------------------------------------------------------------- children


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)``."""
    median = statistics.median(values)
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Print the tables and the verdicts."""
    evidently, shipyard = runs.get("evidently"), runs.get("shipyard")
    rows: list[tuple[str, list[float], list[float] | None, list[dict[str, Any]]]] = []
    if evidently:
        report_s = [r["seconds"] for r in evidently]
        total_s = [r["seconds"] + r["load_seconds"] for r in evidently]
        version = evidently[0]["version"]
        rows.append(
            (
                f"Evidently {version} `Report([DataDriftPreset()]).run`",
                report_s,
                [r["load_seconds"] for r in evidently],
                evidently,
            )
        )
        rows.append((f"Evidently {version}, load + report", total_s, None, evidently))
    if shipyard:
        rows.append(
            (
                "shipyard `compare([ref], [cur])` (reads the Parquet itself)",
                [r["seconds"] for r in shipyard],
                None,
                shipyard,
            )
        )
    print()
    print(
        "Seconds: median (min-max) of the runs; load = `pd.read_parquet` + "
        "`Dataset.from_pandas` (Evidently); peak = the child process's ru_maxrss."
    )
    print()
    print(
        "| contender | seconds | load s | peak RSS MB | vs Evidently report | "
        "vs Evidently load + report | others' CPU, cores (max) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, load, results in rows:
        median = statistics.median(seconds)
        versus = ["", ""]
        if evidently:
            versus = [
                f"{statistics.median(report_s) / median:.1f}x",
                f"{statistics.median(total_s) / median:.1f}x",
            ]
        others = [r["others_cores"] for r in results]
        print(
            f"| {name} | {spread(seconds)} | {spread(load) if load else ''} | "
            f"{spread([r['peak_mb'] for r in results], 0)} | {versus[0]} | {versus[1]} | "
            f"{statistics.median(others):.2f} ({max(others):.2f}) |"
        )
    for name, results in runs.items():
        if all("import_seconds" in r for r in results):
            imports = spread([r["import_seconds"] for r in results])
            print(f"{name}: imports before the timer {imports} s")
    if evidently:
        print(f"Evidently's own pandas: {evidently[0]['pandas_version']}")
    if runs.get("command"):
        report_command(runs, shipyard[0] if shipyard else None)
    if shipyard:
        compare_scores(evidently[0] if evidently else None, shipyard[0])
        seconds = statistics.median([r["seconds"] for r in shipyard])
        peak = statistics.median([r["peak_mb"] for r in shipyard])
        print()
        verdict = "PASS" if seconds <= TARGET_SECONDS else "FAIL"
        print(f"target: shipyard <= {TARGET_SECONDS:g} s: {verdict} ({seconds:.2f} s, median)")
        verdict = "PASS" if peak <= TARGET_MB else "FAIL"
        print(f"target: shipyard peak RSS <= {TARGET_MB:g} MB: {verdict} ({peak:.0f} MB, median)")


def report_command(runs: dict[str, list[dict[str, Any]]], shipyard: dict[str, Any] | None) -> None:
    """The command's table (wall, peak, and what share imports and the model take), verdicts."""
    command = runs["command"]
    rows: list[tuple[str, list[dict[str, Any]], str]] = [
        (
            f"`shipyard monitor {MODEL} --reference ... --current ... --json` (fresh process)",
            command,
            "wall",
        ),
        (
            "in process: `Project.monitor` (imports and model load before the timer)",
            runs["monitor"],
            "seconds",
        ),
        (
            "of which the model: its answers on both files, as the monitor scores",
            runs["model"],
            "seconds",
        ),
        (
            "a fresh process's imports (CLI, project, engine, sklearn flavor)",
            runs["imports"],
            "seconds",
        ),
    ]
    print()
    print("| run | seconds | peak RSS MB | process CPU s | others' CPU, cores (max) |")
    print("|---|---:|---:|---:|---:|")
    for name, results, key in rows:
        others = [r["others_cores"] for r in results]
        print(
            f"| {name} | {spread([r[key] for r in results])} | "
            f"{spread([r['peak_mb'] for r in results], 0)} | "
            f"{spread([r['cpu_seconds'] for r in results])} | "
            f"{statistics.median(others):.2f} ({max(others):.2f}) |"
        )
    wall = statistics.median([r["wall"] for r in command])
    imports = statistics.median([r["seconds"] for r in runs["imports"]])
    model = statistics.median([r["seconds"] for r in runs["model"]])
    print(
        f"command wall {wall:.2f} s: imports {imports:.2f} s ({imports / wall:.0%}), the model's "
        f"answers {model:.2f} s ({model / wall:.0%}), the rest "
        f"{wall - imports - model:.2f} s (the model's load, reading, statistics, storing)"
    )
    if shipyard is not None:
        ours = command[0]["scores"]
        diff = max(abs(ours[c] - shipyard["columns"][c]["score"]) for c in ours)
        print(f"command's drift scores vs `compare`'s: largest difference {diff:.2e}")
    peak = statistics.median([r["peak_mb"] for r in command])
    verdict = "PASS" if wall <= COMMAND_SECONDS else "FAIL"
    print(f"target: command <= {COMMAND_SECONDS:g} s: {verdict} ({wall:.2f} s, median)")
    verdict = "PASS" if peak <= COMMAND_MB else "FAIL"
    print(f"target: command peak RSS <= {COMMAND_MB:g} MB: {verdict} ({peak:.0f} MB, median)")


def compare_scores(evidently: dict[str, Any] | None, shipyard: dict[str, Any]) -> None:
    """Per-column table, largest |score difference| per method, differing methods, verdict.

    The 1e-6 target holds where both tools compute the statistic from raw rows: shipyard's
    ``source == "raw"`` (Evidently always reads rows). A column shipyard scores from a
    profile is checked against its own ``bound`` instead.
    """
    ours = shipyard["columns"]
    theirs = evidently["columns"] if evidently else {}
    both = [c for c in ours if c in theirs]
    print()
    print(
        "| column | Evidently method | shipyard method | Evidently score | shipyard score | "
        "abs difference | drifted (Evidently/shipyard) | shipyard source (bound) |"
    )
    print("|---|---|---|---:|---:|---:|---|---|")
    worst: dict[str, tuple[float, str, int]] = {}
    differing: list[str] = []
    beyond: list[str] = []  # profile columns whose difference exceeds their own bound
    for column, s in ours.items():
        e = theirs.get(column)
        bound = f" ({s['bound']:.1e})" if s.get("bound") is not None else ""
        if e is None:
            print(
                f"| {column} | | {s['method']} | | {s['score']:.9g} | | /{s['drifted']} | "
                f"{s['source']}{bound} |"
            )
            continue
        diff = abs(e["score"] - s["score"])
        method = canonical(e["method"])
        if method != canonical(s["method"]):
            differing.append(f"{column} (Evidently {e['method']}, shipyard {s['method']})")
        elif s["source"] == "raw":
            top, where, count = worst.get(method, (-1.0, "", 0))
            worst[method] = (diff, column, count + 1) if diff > top else (top, where, count + 1)
        elif s.get("bound") is not None and diff > s["bound"]:
            beyond.append(f"{column} ({diff:.2e} > bound {s['bound']:.2e})")
        print(
            f"| {column} | {e['method']} | {s['method']} | {e['score']:.9g} | "
            f"{s['score']:.9g} | {diff:.2e} | {e['drifted']}/{s['drifted']} | "
            f"{s['source']}{bound} |"
        )
    if evidently is None:
        print(
            f"shipyard drift share {shipyard['drift_share']:.2f}, dataset drift "
            f"{shipyard['dataset_drift']}"
        )
        print("target: scores equal to Evidently's within 1e-6: not measured (--skip-evidently)")
        return
    print()
    print("Raw rows on both sides, same method:")
    print()
    print("| method | columns | max abs score difference | column |")
    print("|---|---:|---:|---|")
    for method, (diff, column, count) in sorted(worst.items()):
        print(f"| {method} | {count} | {diff:.2e} | {column} |")
    print(f"columns whose method differs: {', '.join(differing) or 'none'}")
    missing = sorted(set(theirs) ^ set(ours))
    if missing:
        print(f"columns in one report only: {', '.join(missing)}")
    if beyond:
        print(f"profile columns off by more than their bound: {', '.join(beyond)}")
    verdicts = [c for c in both if theirs[c]["drifted"] != ours[c]["drifted"]]
    print(f"columns whose drift verdict differs: {', '.join(verdicts) or 'none'}")
    print(
        f"drift share: Evidently {evidently['drift_share']:.2f}, shipyard "
        f"{shipyard['drift_share']:.2f}; dataset drift: Evidently "
        f"{evidently['dataset_drift']}, shipyard {shipyard['dataset_drift']}"
    )
    largest = max((diff for diff, _, _ in worst.values()), default=float("nan"))
    ok = largest <= TARGET_DIFF and not differing and not missing
    problems = [
        text for text, bad in (("methods differ", differing), ("columns missing", missing)) if bad
    ]
    print(
        f"target: scores equal to Evidently's within {TARGET_DIFF:g} where both read raw "
        f"rows: {'PASS' if ok else 'FAIL'} (largest {largest:.2e} over "
        f"{sum(n for _, _, n in worst.values())} columns{''.join('; ' + p for p in problems)})"
    )
