"""``shipyard monitor`` (a monitoring report) and ``shipyard profile`` (a new reference profile).

::

    shipyard monitor churn@production                # the last window of the prediction log
    shipyard monitor churn@production --window 7d --report churn.html
    shipyard monitor churn:3 --current data/next_month.csv --target churned --json
    shipyard monitor churn:3 --reference data/train.csv --current batch.parquet --key id
    shipyard monitor churn --history                         # stored results over time
    shipyard profile churn:3 --data data/eval.csv            # the version's new reference
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.context import JsonOption, ProjectOption, open_project
from shipyard.core.refs import ModelRef
from shipyard.render import console, print_json

if TYPE_CHECKING:
    from shipyard.statistics.report import MonitoringReport

RefArgument = Annotated[
    str, typer.Argument(help="Model reference: NAME, NAME:VERSION or NAME@ALIAS.")
]


def monitor_command(
    ctx: typer.Context,
    ref: RefArgument,
    reference: Annotated[
        str | None,
        typer.Option(help="Raw reference rows (file or ZONE/NAME); default: the stored profile."),
    ] = None,
    current: Annotated[
        str | None,
        typer.Option(help="Rows to monitor (file or ZONE/NAME); default: the prediction log."),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(help="A batch job's rows and predictions: its id, or latest."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="How far back the prediction log is read, e.g. 1d, 12h (default: "
            "[monitoring] window, 1d)."
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Column of --current matched with feedback keys.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Column of --current holding the ground truth.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report here.")
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="List the stored reports instead of computing one.")
    ] = False,
    save: Annotated[
        bool, typer.Option(help="Store the report (time series, alerts). --no-save: just print.")
    ] = True,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Data drift, prediction drift, data quality and performance of a model, with alerts."""
    opened = open_project(ctx, project)
    if history:
        from shipyard.datasets.monitor_results import MonitorResults

        name = ModelRef.parse(ref).name
        stored = MonitorResults(opened.database).history(name)
        if as_json:
            print_json([{"id": r.id, "version": r.version, "computed_at": r.computed_at.isoformat(),
                         "monitor": r.monitor, "dataset_drift": r.report["dataset_drift"],
                         "drift_share": r.report["drift_share"]} for r in stored])  # fmt: skip
            return
        _history_table(name, stored)
        return
    outcome = opened.monitor(
        ref,
        reference=reference,
        current=current,
        batch=batch,
        window=window,
        key=key,
        target=target,
        report=report,
        save=save,
    )
    if as_json:
        print_json(outcome.report)
        return
    _print_report(outcome.typed)
    if outcome.html is not None:
        console.print(f"HTML report: {outcome.html}")


def profile_command(
    ctx: typer.Context,
    ref: RefArgument,
    data: Annotated[
        str, typer.Option(help="Reference rows: training or evaluation data (file or ZONE/NAME).")
    ],
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Store a new reference profile of a model version from DATA (used by monitor from now on)."""
    opened = open_project(ctx, project)
    info, built, source = opened.profile(ref, data)
    if as_json:
        print_json({"model": info.name, "version": info.version, "rows": built.rows,
                    "columns": sorted(built.columns), "source": source})  # fmt: skip
        return
    console.print(
        f"Stored the reference profile of {info.name}:{info.version}: {built.rows:,} rows, "
        f"{len(built.columns)} columns ({escape(source)})"
    )


def _print_report(report: MonitoringReport) -> None:
    drift = report.drift
    verdict = "[red]DRIFT[/red]" if drift.dataset_drift else "[green]no drift[/green]"
    console.print(
        f"[bold]{report.model}:{report.version}[/bold]  {verdict}: "
        f"{drift.drift_share:.0%} of columns drifted (threshold "
        f"{drift.share_threshold:.0%})"
    )
    console.print(f"  reference: {escape(report.reference)}")
    console.print(f"  current:   {escape(report.current)}")
    table = Table("column", "method", "score", "threshold", "drifted")
    entries = [(c.column, c) for c in drift.columns]
    if report.prediction_drift is not None:
        entries += [(f"{c.column} (output)", c) for c in report.prediction_drift.columns]
    for column, entry in entries:
        bound = entry.bound
        approx = f" ±{bound:.2g}" if bound and math.isfinite(bound) else ""
        table.add_row(
            escape(str(column)),
            entry.method,
            f"{entry.score:.4g}{approx}",
            f"{entry.threshold:.4g}",
            "[red]yes[/red]" if entry.drifted else "no",
        )
    console.print(table)
    quality = report.quality
    console.print(
        f"  quality: {quality.failing_rows:,} failing rows "
        f"({quality.failing_share:.1%}), {quality.duplicates:,} duplicates"
        + (
            f", missing columns {', '.join(quality.missing_columns)}"
            if quality.missing_columns
            else ""
        )
    )
    performance = report.performance
    if performance is not None and performance.metrics:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in performance.metrics.items())
        console.print(f"  performance on {performance.rows:,} labelled rows: {shown}")
    else:
        console.print("  performance: no ground truth for this window yet")
    for alert in report.alerts or ():
        if alert["state"] in ("fired", "resolved"):
            console.print(f"  alert {alert['state']}: {escape(alert['message'])}")


def _history_table(name: str, stored: list[Any]) -> None:
    if not stored:
        console.print(f"No monitoring reports of {escape(name)} yet: run 'shipyard monitor {name}'")
        return
    table = Table("id", "computed at", "version", "monitor", "rows", "drift share", "drift")
    for result in stored:
        report = result.report
        table.add_row(
            str(result.id),
            result.computed_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(result.version),
            escape(result.monitor or "-"),
            f"{report['rows']['current']:,}",
            f"{report['drift_share']:.0%}",
            "yes" if report["dataset_drift"] else "no",
        )
    console.print(table)
