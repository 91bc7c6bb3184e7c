"""``shipyard feedback …``: ground truth (labels) for a model's predictions, from files.

::

    shipyard feedback add churn --file labels.csv --label-column churned --key-column customer_id
    shipyard feedback add churn --file online.parquet --label-column churned \\
        --request-id-column request_id --row-column row
    shipyard feedback list churn [--since 2024-05-01] [--limit 100] [--json]

A batch prediction is named by its key (the value of the job's first key column, or its
``row_id``); an online one by the request id its answer carried (``X-Request-ID``) and the
row of that request (from 0; 0 without ``--row-column``). A different label for a labelled
prediction is refused (nothing stored) unless ``--replace`` is given. The model server
takes the same labels over HTTP: ``POST /v1/feedback``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.core.exceptions import InvalidArgumentError
from shipyard.render import console, print_json

if TYPE_CHECKING:
    from shipyard.datasets.feedback import Label

feedback_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="Ground truth for predictions: store label files, list what arrived.",
    no_args_is_help=True,
)

_SUFFIXES = (".csv", ".parquet", ".pq")


def read_labels(
    path: Path,
    label_column: str,
    key_column: str | None = None,
    request_id_column: str | None = None,
    row_column: str | None = None,
) -> list[Label]:
    """The labels of a CSV or Parquet file, one per row (keys and request ids read as text)."""
    import pandas as pd

    from shipyard.datasets.feedback import Label

    if (key_column is None) == (request_id_column is None):
        raise InvalidArgumentError(
            "say which predictions the labels are for: --key-column COL (batch predictions, "
            "by key) or --request-id-column COL (online predictions, by request id), not both"
        )
    if row_column is not None and request_id_column is None:
        raise InvalidArgumentError(
            "--row-column goes with --request-id-column (the row of an online request); a "
            "key names one batch prediction already"
        )
    if not path.is_file():
        raise InvalidArgumentError(
            f"label file {str(path)!r} does not exist; give --file the path of a CSV or "
            "Parquet file"
        )
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InvalidArgumentError(
            f"label file {path.name!r} is neither CSV nor Parquet; give a .csv or .parquet file"
        )
    ident = key_column or request_id_column or ""  # exactly one of them, checked above
    wanted = [ident, label_column, *([row_column] if row_column else [])]
    if suffix == ".csv":
        # keys and request ids stay text as written ('007' is not 7)
        frame = pd.read_csv(path, dtype={ident: str}, keep_default_na=True)
    else:
        frame = pd.read_parquet(path)
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        raise InvalidArgumentError(
            f"{path.name} has no column {', '.join(map(repr, missing))}; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )
    idents = frame[ident]
    blank = idents.isna().to_numpy()
    if blank.any():
        first = int(blank.argmax())
        raise InvalidArgumentError(
            f"{path.name}: row {first} (from 0) has no {ident!r}; every label needs the "
            f"{'key' if key_column else 'request id'} of its prediction"
        )
    texts = idents.astype(str).tolist()
    values = frame[label_column].tolist()
    rows: list[Any] = frame[row_column].tolist() if row_column else [0] * len(frame)
    labels: list[Label] = []
    for text, value, row in zip(texts, values, rows, strict=True):
        if row_column and isinstance(row, float) and row.is_integer():
            row = int(row)  # a CSV column with gaps reads as floats
        if key_column:
            labels.append(Label(label=value, key=text))
        else:
            labels.append(Label(label=value, request_id=text, row=row))
    return labels


@feedback_app.command("add")
def add(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The registered model's name, e.g. churn.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="A CSV or Parquet file of labels.")],
    label_column: Annotated[str, typer.Option(help="The column holding the true values.")],
    key_column: Annotated[
        str | None,
        typer.Option(help="Batch predictions: the column of keys (a job key column or row_id)."),
    ] = None,
    request_id_column: Annotated[
        str | None,
        typer.Option(help="Online predictions: the column of request ids (X-Request-ID)."),
    ] = None,
    row_column: Annotated[
        str | None,
        typer.Option(help="With --request-id-column: the row of each request (default 0)."),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Overwrite labels stored already (else a different one is refused)."
        ),
    ] = False,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Store a file of labels for a model's predictions (--replace to overwrite stored ones)."""
    from shipyard.datasets.feedback import FeedbackStore, check_model_name

    check_model_name(model)
    labels = read_labels(file, label_column, key_column, request_id_column, row_column)
    opened = open_project(ctx, project)
    opened.registry.list_versions(model, include_archived=True)  # NotFoundError when unknown
    try:
        stored = FeedbackStore(opened.database).add(model, labels, replace=replace)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(
            f"{file.name}: {exc.message} (labels[N] is data row N of the file, from 0); "
            "nothing was stored"
        ) from exc
    if as_json:
        print_json({"model": model, "accepted": stored, "file": str(file)})
        return
    kind = "batch (by key)" if key_column else "online (by request id)"
    console.print(
        f"Stored {stored:,} labels of {model} from {escape(file.name)}: {kind} predictions"
    )


def parse_since(text: str | None) -> datetime | None:
    """``--since`` as a UTC datetime (ISO-8601 date or datetime; no zone means UTC)."""
    from shipyard.datasets.predictions import as_utc

    if text is None or not text.strip():
        return None
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"--since must be an ISO-8601 date or datetime, e.g. 2024-05-01 or "
            f"2024-05-01T12:00:00+00:00 (no zone means UTC), but got {text!r}"
        ) from exc


@feedback_app.command("list")
def list_labels(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model's name.")],
    since: Annotated[
        str | None, typer.Option(help="Received at or after (ISO-8601; no zone means UTC).")
    ] = None,
    limit: Annotated[int, typer.Option(help="The newest N labels (0: all).")] = 100,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """The labels received for a model, oldest first: prediction, label, when it arrived."""
    from shipyard.datasets.feedback import FeedbackStore, check_model_name

    check_model_name(model)
    start = parse_since(since)
    if limit < 0:
        raise InvalidArgumentError(f"--limit must be 0 (all) or more but got {limit}")
    frame = FeedbackStore(open_project(ctx, project).database).read(model, since=start)
    total = len(frame)
    if limit:
        frame = frame.tail(limit)
    records = [
        {
            "request_id": rid or None,
            "row": int(row) if rid else None,
            "key": key or None,
            "label": label,
            "received_at": received.isoformat(),
        }
        for rid, row, key, label, received in frame.itertuples(index=False)
    ]
    if as_json:
        print_json(records)
        return
    if not records:
        console.print(
            f"No labels for {model}"
            + (f" since {start.isoformat()}" if start else "")
            + ": 'shipyard feedback add' stores a file, POST /v1/feedback sends them online."
        )
        return
    shown = f" (the newest {len(records):,} of {total:,})" if total > len(records) else ""
    grid = Table(title=f"Labels of {model}{shown}")
    for column in ("prediction", "label", "received"):
        grid.add_column(column)
    for record in records:
        name = (
            f"request {record['request_id']} row {record['row']}"
            if record["request_id"]
            else f"key {record['key']}"
        )
        grid.add_row(escape(name), escape(str(record["label"])), record["received_at"][:19])
    console.print(grid)
