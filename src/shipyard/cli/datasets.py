"""``shipyard datasets …``: what the raw, processed and predictions zones hold."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.render import console, print_json

datasets_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="Datasets in the raw, processed and predictions zones.",
    no_args_is_help=True,
)


@datasets_app.command("list")
def list_(
    ctx: typer.Context,
    zone: Annotated[str | None, typer.Option(help="Only this zone.")] = None,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """The newest version of every dataset."""
    infos = open_project(ctx, project).datasets.list(zone)
    if as_json:
        print_json([i.to_dict() for i in infos])
        return
    if not infos:
        console.print("No datasets yet: 'shipyard run PIPELINE' writes them.")
        return
    table = Table(title="Datasets")
    for column in ("dataset", "version", "rows", "columns", "fingerprint", "written by", "when"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            f"{i.zone}/{i.name}",
            str(i.version),
            str(i.row_count),
            str(len(i.columns)),
            i.fingerprint[:12],
            f"{i.run_id}/{i.step}" if i.run_id else i.source or i.created_by,
            f"{i.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@datasets_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ZONE/NAME or ZONE/NAME:VERSION.")],
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """One dataset version: schema, row count, fingerprint, lineage; and its versions."""
    datasets = open_project(ctx, project).datasets
    info = datasets.get(ref)
    if as_json:
        print_json(info.to_dict())
        return
    console.print(f"[bold]{info.ref}[/bold]  {info.row_count} rows  sha256 {info.fingerprint}")
    origin = f"run {info.run_id}, step {info.step}" if info.run_id else info.source or "written"
    console.print(f"{origin}, {info.created_at:%Y-%m-%d %H:%M:%S} UTC by {info.created_by}")
    table = Table(title="Schema")
    table.add_column("column")
    table.add_column("dtype")
    for column in info.columns:
        table.add_row(column["name"], column["dtype"])
    console.print(table)
    versions = datasets.versions(f"{info.zone}/{info.name}")
    console.print("versions: " + ", ".join(str(v.version) for v in versions))


@datasets_app.command("head")
def head(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="ZONE/NAME or ZONE/NAME:VERSION.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many rows.")] = 10,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """The first rows of a dataset version."""
    frame = open_project(ctx, project).datasets.head(ref, rows)
    if as_json:
        print_json(frame.to_dict(orient="records"))
        return
    table = Table(title=ref)
    for column in frame.columns:
        table.add_column(str(column))
    for record in frame.itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in record))
    console.print(table)
