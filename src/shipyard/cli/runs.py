"""``shipyard run [PIPELINE]`` and ``shipyard runs …``: run pipelines and look at past runs.

``run_command`` is registered as ``app.command("run")`` and ``runs_app`` as the ``runs``
group in :mod:`shipyard.cli.app`. With no name, ``shipyard run`` runs the project's only
pipeline, or the one ``[pipelines] default = "NAME"`` in shipyard.toml names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.core.exceptions import ConfigError
from shipyard.render import console, err_console, print_json

if TYPE_CHECKING:
    from pathlib import Path

    from shipyard.core.settings import Settings
    from shipyard.datasets.run_records import RunInfo, Runs, StepRunInfo

runs_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="Pipeline runs: what ran, when, and how it ended.",
    no_args_is_help=True,
)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _log_lines(info: RunInfo) -> None:
    """Where each failed step's logs are (on stderr)."""
    for item in info.failed_steps:
        if item.log_dir:
            err_console.print(
                f"  logs of {item.step}: {escape(item.log_dir)} (stdout.log, stderr.log)",
                soft_wrap=True,
            )


def default_pipeline(settings: Settings) -> str:
    """The pipeline ``shipyard run`` runs when given no name.

    ``[pipelines] default`` when set, else the project's only pipeline; a
    :class:`ConfigError` listing the pipelines when there are none or several.
    """
    from shipyard.core.settings import CONFIG_FILE
    from shipyard.pipelines.resolve import pipeline_names

    names = pipeline_names(settings)
    if settings.default_pipeline:
        if settings.default_pipeline not in names:
            raise ConfigError(
                f"[pipelines] default = {settings.default_pipeline!r} in "
                f"{settings.root / CONFIG_FILE} names no pipeline; pipelines here: "
                f"{', '.join(names) or 'none'}. Fix the name, or write "
                f"pipelines/{settings.default_pipeline}.py"
            )
        return settings.default_pipeline
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError(
            f"no pipelines in {settings.root}: write pipelines/NAME.py with @step functions, "
            'or add a [pipelines.NAME] table with kind = "standard" to shipyard.toml'
        )
    raise ConfigError(
        f"this project has {len(names)} pipelines ({', '.join(names)}): name one "
        f"(shipyard run {names[0]}), or set the default in {CONFIG_FILE}: "
        f'[pipelines] default = "{names[0]}"'
    )


def run_command(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None,
        typer.Argument(
            # \[ keeps rich's help formatter from reading [pipelines] as a style
            help="Pipeline name (pipelines/NAME.py or \\[pipelines.NAME]); default: "
            "\\[pipelines] default in shipyard.toml, or the project's only pipeline.",
            show_default=False,
        ),
    ] = None,
    step: Annotated[
        list[str] | None,
        typer.Option("--step", "-s", help="Run only this step (repeatable)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Override a parameter: STEP.KEY=VALUE (repeatable)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, even unchanged ones.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Steps run at once, at most.")
    ] = 2,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Run PIPELINE: its steps in dependency order, unchanged steps reused from the cache."""
    from shipyard.datasets.run_records import SUCCEEDED
    from shipyard.pipelines.plan import parse_param_options
    from shipyard.pipelines.resolve import resolve_pipeline
    from shipyard.pipelines.runner import Runner

    opened = open_project(ctx, project)
    name = pipeline or default_pipeline(opened.settings)
    resolved = resolve_pipeline(opened.settings, name)
    runner = Runner(
        opened.settings, opened.database, opened.artifacts, opened.datasets,
        workers=workers, console=None if as_json else console,
    )  # fmt: skip
    info = runner.run(
        resolved, steps=step or None, params=parse_param_options(param or []),
        use_cache=not no_cache,
    )  # fmt: skip
    if as_json:
        print_json(info.to_dict())
    if info.status != SUCCEEDED:
        err_console.print(f"[red]error:[/red] {escape(info.error)}", soft_wrap=True)
        _log_lines(info)
        raise typer.Exit(1)


def _runs_table(runs: list[RunInfo]) -> Table:
    from shipyard.datasets.run_records import CACHED, SUCCEEDED
    from shipyard.pipelines.progress import styled

    table = Table(title="Pipeline runs")
    for column in ("run", "pipeline", "status", "trigger", "started", "time", "steps"):
        table.add_column(column, no_wrap=column in ("run", "status"))
    for info in runs:
        counts = f"{info.count(SUCCEEDED)} ran, {info.count(CACHED)} cached"
        if info.failed_steps:
            counts += f", {len(info.failed_steps)} failed"
        table.add_row(
            info.id,
            info.pipeline,
            styled(info.status),
            info.trigger,
            info.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            _seconds(info.duration),
            counts,
        )
    return table


def _steps_table(steps: list[StepRunInfo]) -> Table:
    from shipyard.pipelines.progress import styled

    table = Table(title="Steps")
    for column in ("step", "status", "attempts", "time", "outputs"):
        table.add_column(column, no_wrap=column in ("step", "status"))
    for item in steps:
        outputs = ", ".join(
            str(d.get("ref") or f"{name}@{str(d.get('digest', ''))[:12]}")
            for name, d in item.outputs.items()
        )
        table.add_row(
            item.step, styled(item.status), str(item.attempts), _seconds(item.duration), outputs
        )
    return table


def _records(ctx: typer.Context, project: Path | None) -> Runs:
    """The project's run records, once runs whose process stopped are marked failed."""
    from datetime import timedelta

    opened = open_project(ctx, project)
    records = opened.runs
    records.fail_stale(timedelta(seconds=opened.settings.runs.stale_after_seconds))
    return records


@runs_app.command("list")
def list_(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 50,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """The newest pipeline runs, newest first.

    A run left running by a process that was killed (no heartbeat for [runs]
    stale_after_seconds) is marked failed first.
    """
    records = _records(ctx, project)
    runs = records.list(pipeline=pipeline, limit=limit)
    if as_json:
        print_json([info.to_dict() for info in runs])
        return
    if not runs:
        console.print("no runs yet: 'shipyard run PIPELINE' starts one")
        return
    console.print(_runs_table(runs))


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")],
    lines: Annotated[int, typer.Option(min=0, help="Lines of a failed step's stderr.")] = 20,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """One run: its steps, their outputs, and for a failed step its error and logs."""
    from shipyard.datasets.run_records import FAILED, KILLED
    from shipyard.pipelines.progress import styled

    info = _records(ctx, project).get(run_id)
    if as_json:
        print_json(info.to_dict())
        return
    console.print(
        f"[bold]{info.id}[/bold]  pipeline={info.pipeline}  status={styled(info.status)}  "
        f"trigger={info.trigger}  by {info.created_by}"
    )
    console.print(
        f"started {info.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", took {_seconds(info.duration)}" if info.duration is not None else "")
    )
    if info.error:
        console.print(f"[red]error:[/red] {escape(info.error)}", soft_wrap=True)
    console.print(_steps_table(info.steps))
    for item in info.steps:
        if item.status not in (FAILED, KILLED):
            continue
        console.print(f"[red]{item.step}[/red]: {escape(item.error)}", soft_wrap=True)
        console.print(f"  logs: {escape(item.log_dir)} (stdout.log, stderr.log)", soft_wrap=True)
        for line in item.log_tail("stderr", lines):
            console.print(f"  | {escape(line)}", soft_wrap=True)
