"""``shipyard scheduler`` and ``shipyard export airflow``: run pipelines on their schedules.

``shipyard scheduler`` is a foreground loop (run it under systemd, a container, or a
terminal); Ctrl-C lets running pipelines finish and releases the scheduler's locks (a
second Ctrl-C abandons them). Several schedulers may share one database: each pipeline
is locked while it runs, so none runs twice at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from shipyard.cli.context import Group, ProjectOption, open_project
from shipyard.core.exceptions import ConfigError, EmptyWindowError
from shipyard.render import console, err_console

if TYPE_CHECKING:
    from shipyard.datasets.run_records import ScheduledFire
    from shipyard.pipelines.schedule import Fire, Launch
    from shipyard.project import Project

export_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="Export pipelines to other orchestrators.",
    no_args_is_help=True,
)


def build_launcher(project: Project) -> Launch:
    """The launch callable the scheduler uses: shipyard's runner, or a monitor, in this process."""
    from shipyard.datasets.run_records import SUCCEEDED
    from shipyard.pipelines.schedule import make_launcher
    from shipyard.project import MONITOR_PREFIX

    pipelines = make_launcher(
        project.settings, project.database, project.artifacts, project.datasets
    )

    def launch(name: str, fire: ScheduledFire) -> str:
        if not name.startswith(MONITOR_PREFIX):
            return pipelines(name, fire)
        # a monitor keeps no run: the scheduler records its fire once it has run
        try:
            outcome = project.run_monitor(name.removeprefix(MONITOR_PREFIX))
        except EmptyWindowError as exc:  # a quiet hour is not a failure: nothing to report
            console.print(f"{escape(name)}: {escape(exc.message)}")
            return SUCCEEDED
        fired = [a["message"] for a in outcome.report.get("alerts", []) if a["state"] == "fired"]
        for message in fired:
            err_console.print(escape(message))
        return SUCCEEDED

    return launch


def _unsuccessful(status: str) -> bool:
    """Whether a run ended so that ``shipyard scheduler --once`` exits with status 1."""
    from shipyard.datasets.run_records import FAILED, KILLED

    return status in (FAILED, KILLED)


def _report(fire: Fire) -> None:
    style = "red" if _unsuccessful(fire.status) else "green"
    detail = f": {escape(fire.error)}" if fire.error else ""
    console.print(
        f"{fire.fire_time:%Y-%m-%d %H:%M} UTC  {escape(fire.pipeline)}  "
        f"[{style}]{escape(fire.status)}[/{style}]{detail}"
    )


def scheduler(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Launch what is due now, wait for it, and exit.")
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option("--for", min=0, help="Stop after SECONDS (running pipelines finish)."),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Run pipelines and monitors on the cron schedules of shipyard.toml.

    Pipelines: [schedules.PIPELINE] tables; monitors: [monitors.NAME] tables with a cron.
    """
    from shipyard.pipelines.resolve import pipeline_names
    from shipyard.pipelines.schedule import Scheduler, load_schedules

    opened = open_project(ctx, project)
    schedules = load_schedules(opened.settings)
    enabled = {name: s for name, s in schedules.items() if s.enabled}
    monitors = opened.monitor_schedules()
    if not enabled and not monitors:
        console.print(
            escape(
                "No enabled schedules: add a table such as\n"
                '  [schedules.PIPELINE]\n  cron = "0 6 * * *"\nor\n'
                '  [monitors.NAME]\n  model = "churn@production"\n  cron = "0 * * * *"\n'
                "to shipyard.toml"
            )
        )
        return
    known = pipeline_names(opened.settings)
    unknown = sorted(set(enabled) - set(known))
    if unknown:
        raise ConfigError(
            f"[schedules.{unknown[0]}] in shipyard.toml names no pipeline; pipelines here: "
            f"{', '.join(known) or 'none'}. Rename the table or write pipelines/{unknown[0]}.py"
        )
    enabled |= monitors
    runner = Scheduler(
        opened.settings,
        opened.database,
        build_launcher(opened),
        schedules=enabled,
        on_fire=_report,
    )
    for name, schedule in enabled.items():
        console.print(
            f"{escape(name)}: cron {schedule.cron!r} ({schedule.timezone}), "
            f"missed runs: {schedule.missed}"
        )
    try:
        if once:
            runner.tick()
        else:
            runner.run(duration=duration)
        runner.wait()
    except KeyboardInterrupt:
        runner.stop()
        if runner.running:
            err_console.print(
                f"stopping: waiting for {', '.join(runner.running)} to finish "
                "(Ctrl-C again to abandon them)"
            )
            try:
                runner.wait()
            except KeyboardInterrupt:
                err_console.print("abandoned the running pipelines; releasing their locks")
    finally:
        runner.close()
    if once and not runner.fires:
        console.print("Nothing due.")
    if any(_unsuccessful(fire.status) for fire in runner.fires):
        raise typer.Exit(1)


@export_app.command("airflow")
def export_airflow_command(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the DAG files (Airflow's dags folder).")
    ],
    executable: Annotated[
        str | None,
        typer.Option(
            help="The shipyard command the tasks run, as Airflow's workers see it "
            "(default: the one running this export)."
        ),
    ] = None,
    project_dir: Annotated[
        str | None,
        typer.Option(
            "--project-dir",
            help="The project folder as the tasks see it, e.g. /app in the shipyard image "
            "(default: this project's root).",
        ),
    ] = None,
    pipeline: Annotated[
        list[str] | None, typer.Option(help="Only this pipeline (repeatable; default: all).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Write one Airflow 3 DAG file per pipeline (one task per step) into --out.

    For Airflow in a container or on another host, give the paths the tasks will see:
    --executable /opt/shipyard/bin/shipyard --project-dir /app.
    """
    from shipyard.pipelines.airflow import (
        default_executable,
        export_airflow,
        project_pipelines,
        task_project_dir,
    )

    opened = open_project(ctx, project)
    folder = task_project_dir(opened.settings, project_dir)
    pipelines = project_pipelines(opened.settings, pipeline or ())
    if not pipelines:
        console.print(f"No pipelines in {opened.root / 'pipelines'}: nothing to export.")
        return
    command = executable or default_executable()
    written = export_airflow(
        opened.settings, pipelines, out.resolve(), executable=command, project_dir=project_dir
    )
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"Tasks run: {escape(command)} run PIPELINE --step STEP --project {escape(folder)}"
    )
