"""``shipyard predict`` (a batch scoring job) and ``shipyard predictions …`` (the store's index).

::

    shipyard predict churn@production --input data/customers.csv --key customer_id
    shipyard predict churn@production --input processed/customers --output scores.csv
    shipyard predict churn@production --input big.parquet --output s3://bucket/scores/
    shipyard predict churn:3 --input "postgresql+psycopg://db/crm" \\
        --query "SELECT * FROM customers ORDER BY id" \\
        --output "postgresql+psycopg://db/crm" --table churn_scores --key id
    shipyard predict churn@production --input big.parquet --resume        # after a crash
    shipyard predict churn@production --input big.parquet --engine dask --scheduler local-cluster
    shipyard predictions list [--model churn] [--json]
    shipyard predictions prune [--older-than-days 30]
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from shipyard.batch.request import DEFAULT_CHUNK_ROWS
from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.core.clock import utcnow
from shipyard.core.exceptions import InvalidArgumentError
from shipyard.render import console, err_console, print_json

predictions_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="The predictions store: batch jobs and their retention.",
    no_args_is_help=True,
)


def predict_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Model reference: NAME, NAME:VERSION or NAME@ALIAS.")],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="CSV or Parquet file or folder, ZONE/NAME[:V], or a database URL with --query.",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="predictions/NAME (default predictions/<model>), FILE.parquet, FILE.csv, "
            "FOLDER/ (Parquet part files), any of these as an fsspec URL (s3://bucket/"
            "scores.parquet), or a database URL with --table. Written once every chunk is "
            "scored; predictions always land in the predictions zone too.",
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="SQL query for a database --input (give it an ORDER BY).")
    ] = None,
    table: Annotated[str | None, typer.Option(help="Table for a database --output.")] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(help="Input column kept with each prediction (repeat; default: row_id)."),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows per chunk: memory grows with this, not with the input.")
    ] = DEFAULT_CHUNK_ROWS,
    resume: Annotated[
        bool, typer.Option(help="Continue the unfinished job with the same arguments.")
    ] = False,
    engine: Annotated[str, typer.Option(help="local or dask.")] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or local-cluster.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Workers of a local-cluster.")] = 2,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Score a batch with a registered model into the predictions store."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    opened = open_project(ctx, project)
    keys = tuple(k for item in key or [] for k in item.split(",") if k)
    with Progress(
        TextColumn("[bold]scoring[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=as_json,
    ) as bar:
        task = bar.add_task("rows", total=None, rate="")
        first: list[tuple[int, float]] = []  # (rows, time) of the first report: reused rows

        def progress(done: int, total: int | None) -> None:
            now = time.perf_counter()
            if not first:
                first.append((done, now))
            rows, since = first[0]
            rate = (done - rows) / (now - since) if now > since else 0.0
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} rows/s")

        result = opened.predict(
            ref,
            input,
            output=output,
            query=query,
            table=table,
            keys=keys,
            chunk_rows=chunk_rows,
            resume=resume,
            engine=engine,
            scheduler=scheduler,
            workers=workers,
            progress=progress,
        )
    if as_json:
        print_json(result.to_dict())
        return
    job = result.job
    console.print(
        f"Scored {job.rows:,} rows with {job.model}:{job.version} in {result.seconds:.1f} s "
        f"({result.rows_per_s:,.0f} rows/s) → {job.dataset}   job {job.id}"
    )
    if result.resumed:
        console.print(
            f"resumed: reused {job.chunks_reused} of {job.chunks} chunks "
            f"({job.rows_reused:,} rows) scored before; scored {job.rows - job.rows_reused:,} now"
        )
    elif resume:
        console.print("nothing to resume for these arguments: ran a new job")
    if job.output != job.dataset and job.output != (job.dataset or "").rsplit(":", 1)[0]:
        console.print(f"also written to {job.output}")
    for note in result.notes:  # the model's warnings, once each instead of once per chunk
        err_console.print(f"note: the model warned: {note}", highlight=False)
    console.print(
        f"Read them: shipyard datasets head {job.dataset}, or GET /v1/predictions?model="
        f"{job.model} on 'shipyard serve'"
    )


@predictions_app.command("list")
def list_jobs(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="The newest N jobs.")] = 20,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Batch jobs, newest last: model, rows, input, output and status."""
    jobs = open_project(ctx, project).predictions.jobs(model, limit=limit)
    if as_json:
        print_json([j.to_dict() for j in jobs])
        return
    if not jobs:
        console.print("No batch jobs yet: 'shipyard predict MODEL --input FILE' runs one.")
        return
    grid = Table(title="Batch jobs")
    # job ids are what --batch and the API take: never cut them; long inputs fold instead
    grid.add_column("job", no_wrap=True, min_width=16)
    for column in ("model", "status", "rows", "reused"):
        grid.add_column(column, no_wrap=True)
    for column in ("input", "dataset", "started"):
        grid.add_column(column, overflow="fold")
    for j in jobs:
        grid.add_row(
            j.id,
            f"{j.model}:{j.version}",
            j.status,
            f"{j.rows:,}",
            f"{j.rows_reused:,}",
            j.input,
            j.dataset or "-",
            f"{j.started_at:%Y-%m-%d %H:%M}",
        )
    console.print(grid)


@predictions_app.command("prune")
def prune(
    ctx: typer.Context,
    older_than_days: Annotated[
        int | None,
        typer.Option(help="Remove what is older than this (default: [predictions] retention)."),
    ] = None,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Apply the retention setting: old batch jobs, prediction datasets, log rows, feedback and
    monitoring reports."""
    opened = open_project(ctx, project)
    days = (
        older_than_days
        if older_than_days is not None
        else opened.settings.predictions.retention_days
    )
    if days <= 0:
        raise InvalidArgumentError(
            "no retention set: give --older-than-days N or set [predictions] retention_days "
            "in shipyard.toml"
        )
    removed = opened.prune(utcnow() - timedelta(days=days))
    if as_json:
        print_json(removed)
        return
    console.print(
        f"removed {removed['jobs']} batch jobs, {removed['datasets']} prediction datasets, "
        f"{removed['online']} online log rows, {removed['feedback']} feedback labels and "
        f"{removed['monitoring']} monitoring reports older than {days} days"
    )
