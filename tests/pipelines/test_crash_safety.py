"""Crash safety with real processes killed by SIGKILL, on SQLite and PostgreSQL.

A run's process writes a heartbeat; once it is killed, the next ``shipyard runs list``,
``shipyard run`` or scheduler start marks its run ``failed``. A step's outputs and its
success are one transaction. A scheduler killed mid-launch launches each fire time once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from tests.helpers import make_settings
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app
from shipyard.datasets.run_records import LockLostError, RunInfo, Runs, ScheduledFire
from shipyard.pipelines import load_module_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.pipelines.schedule import Schedule, Scheduler
from shipyard.store.tables import ScheduleState

CRASH = Path(__file__).parent / "pipelines_for_tests" / "crash.py"
HEARTBEAT = 0.2
STALE_AFTER = 3.0
RUNS_TOML = f"""
[project]
name = "crash"

[runs]
heartbeat_seconds = {HEARTBEAT}
stale_after_seconds = {STALE_AFTER}
"""
YEARLY = '\n[schedules.crash]\ncron = "0 0 1 1 *"\n'
HOLD = '\n[pipelines.crash.params.second]\nmarker = "{marker}"\nhold = 120\n'

RUN_SCRIPT = """
import sys
from shipyard import Project
from shipyard.pipelines import load_module_pipeline
from shipyard.pipelines.runner import Runner

if __name__ == "__main__":
    project = Project(sys.argv[1])
    runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
    pipeline = load_module_pipeline(project.root / "pipelines" / "crash.py")
    runner.run(pipeline, params={"second": {"marker": sys.argv[2], "hold": 120}})
"""

SCHEDULER_SCRIPT = """
import sys, time
from datetime import timedelta
from pathlib import Path
from shipyard import Project
from shipyard.pipelines.schedule import Scheduler, make_launcher

if __name__ == "__main__":
    mode, root, marker, duration = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    project = Project(root)
    real = make_launcher(project.settings, project.database, project.artifacts, project.datasets)

    def held(name, fire):
        # the lock is taken and the fire time due: the scheduler is killed in here
        marker.write_text("launching", encoding="utf-8")
        time.sleep(120)
        return real(name, fire)

    launch = held if mode == "hold-before-run" else real
    scheduler = Scheduler(project.settings, project.database, launch, lease=timedelta(seconds=1.5))
    scheduler.run(duration=float(duration), interval=0.2)
    scheduler.wait()
    scheduler.close()
    project.close()
"""


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(script: Path, *args: str, database_url: str) -> subprocess.Popen[bytes]:
    """Run ``script`` in its own session (so it and its step processes can be killed)."""
    env = {
        **os.environ,
        "SHIPYARD_DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    return subprocess.Popen([sys.executable, str(script), *args], env=env, start_new_session=True)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process``, then whatever it started (its orphaned step processes)."""
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def the_only_run(project: Project) -> RunInfo:
    [info] = Runs(project.database).list()
    return Runs(project.database).get(info.id)  # get() never marks anything


def statuses(info: RunInfo) -> dict[str, str]:
    return {s.step: s.status for s in info.steps}


def wait_until_stale(info: RunInfo) -> None:
    """Sleep until ``info``'s last heartbeat is older than the project's limit."""
    assert info.heartbeat_at is not None
    left = info.heartbeat_at + timedelta(seconds=STALE_AFTER + 0.5) - datetime.now(UTC)
    time.sleep(max(left.total_seconds(), 0.0))


@pytest.fixture
def crash(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """A project with pipelines/crash.py, a fast heartbeat, and raw/seed stored."""
    root = tmp_path / "proj"
    settings = make_settings(root, database_url, RUNS_TOML)
    (root / "pipelines").mkdir()
    shutil.copy(CRASH, root / "pipelines" / "crash.py")
    with Project(settings=settings) as project:
        project.datasets.write("raw/seed", pd.DataFrame({"x": [1, 2, 3]}))
        yield project


def runner_for(project: Project) -> Runner:
    return Runner(project.settings, project.database, project.artifacts, project.datasets)


# -- a run killed with SIGKILL ----------------------------------------------------------


def test_a_run_killed_at_a_step_is_marked_failed_and_the_step_redone(
    crash: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, marker = tmp_path / "run_it.py", tmp_path / "step.pid"
    script.write_text(RUN_SCRIPT, encoding="utf-8")
    process = start(script, str(crash.root), str(marker), database_url=crash.settings.database_url)
    try:
        wait_until(lambda: marker.exists() and bool(marker.read_text()), "the step to start")
        running = the_only_run(crash)
        assert (running.status, running.pid) == ("running", process.pid)
        assert running.host
        assert statuses(running) == {"first": "succeeded", "second": "running"}
        # the heartbeat moves while the process lives, and keeps the run from being marked
        first_beat = running.heartbeat_at
        assert first_beat is not None
        wait_until(
            lambda: (the_only_run(crash).heartbeat_at or first_beat) > first_beat,
            "a heartbeat",
        )
        assert Runs(crash.database).fail_stale(timedelta(seconds=STALE_AFTER)) == []
    finally:
        kill_hard(process)

    killed = the_only_run(crash)
    assert killed.status == "running"  # nobody has looked yet
    wait_until_stale(killed)

    monkeypatch.setenv("SHIPYARD_DATABASE_URL", crash.settings.database_url)
    result = CliRunner().invoke(app, ["runs", "list", "--json", "--project", str(crash.root)])
    assert result.exit_code == 0, result.output
    [listed] = json.loads(result.stdout)
    assert listed["status"] == "failed"
    assert "stopped without finishing (no heartbeat since" in listed["error"]
    assert f"pid {process.pid}" in listed["error"]
    assert {s["step"]: s["status"] for s in listed["steps"]} == {
        "first": "succeeded",
        "second": "killed",
    }
    assert not crash.datasets.exists("processed/second")

    again = runner_for(crash).run(load_module_pipeline(crash.root / "pipelines" / "crash.py"))
    assert again.status == "succeeded", again.error
    assert statuses(again) == {"first": "cached", "second": "succeeded"}
    assert [v.version for v in crash.datasets.versions("processed/second")] == [1]


def stale_run(project: Project) -> str:
    """Record a run as a killed process leaves it: ``running``, heartbeat now stopping."""
    runs = Runs(project.database)
    runs.create(
        run_id="20260101T000000-dead00", pipeline="crash", steps=["first", "second"],
        params={}, trigger="manual", actor="tester", log_root=project.root / "logs",
    )  # fmt: skip
    runs.update_step("20260101T000000-dead00", "first", status="running", attempts=1)
    wait_until_stale(runs.get("20260101T000000-dead00"))
    return "20260101T000000-dead00"


def test_the_next_run_marks_a_stale_run_failed(crash: Project) -> None:
    dead = stale_run(crash)
    info = runner_for(crash).run(load_module_pipeline(crash.root / "pipelines" / "crash.py"))
    assert info.status == "succeeded", info.error
    old = Runs(crash.database).get(dead)
    assert old.status == "failed"
    assert "no heartbeat since" in old.error
    assert statuses(old) == {"first": "killed", "second": "skipped"}


def test_a_scheduler_start_marks_a_stale_run_failed(crash: Project) -> None:
    dead = stale_run(crash)
    scheduler = Scheduler(crash.settings, crash.database, lambda name, fire: "succeeded")
    assert scheduler.tick() == []  # nothing is scheduled: it only looked
    assert Runs(crash.database).get(dead).status == "failed"


# -- a step's outputs and its success: one transaction ---------------------------------

REFUSE_SQLITE = """
CREATE TRIGGER refuse_success BEFORE UPDATE ON step_runs
WHEN NEW.status = 'succeeded' AND NEW.step = 'first'
BEGIN SELECT RAISE(ABORT, 'injected: recording the step failed'); END
"""
REFUSE_POSTGRES = (
    """
CREATE FUNCTION refuse_success() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'succeeded' AND NEW.step = 'first' THEN
        RAISE EXCEPTION 'injected: recording the step failed';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER refuse_success BEFORE UPDATE ON step_runs
FOR EACH ROW EXECUTE FUNCTION refuse_success()
""",
)


def test_outputs_do_not_land_when_recording_the_success_fails(crash: Project) -> None:
    # The database itself refuses the step's success record (a trigger), after the
    # step's dataset version was written in the same transaction.
    statements = REFUSE_POSTGRES if crash.database.backend == "postgresql" else (REFUSE_SQLITE,)
    with crash.database.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    pipeline = load_module_pipeline(crash.root / "pipelines" / "crash.py")

    info = runner_for(crash).run(pipeline, steps=["first"])
    assert info.status == "failed"
    assert "recording outputs failed" in info.step("first").error
    assert "injected" in info.step("first").error
    assert not crash.datasets.exists("processed/first")  # no version without its step

    drop = "DROP TRIGGER refuse_success"
    if crash.database.backend == "postgresql":
        drop += " ON step_runs"
    with crash.database.engine.begin() as connection:
        connection.exec_driver_sql(drop)
    info = runner_for(crash).run(pipeline, steps=["first"])
    assert info.status == "succeeded", info.error
    assert [v.version for v in crash.datasets.versions("processed/first")] == [1]
    assert info.step("first").outputs["processed/first"]["ref"] == "processed/first:1"


# -- a scheduler killed mid-launch ------------------------------------------------------


def seed_due_slot(project: Project) -> datetime:
    """Make the yearly schedule due at this year's first fire time; return that time."""
    slot = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    with project.database.session() as session:
        session.add(ScheduleState(pipeline="crash", next_fire_at=slot))
    return slot


def schedule_state(project: Project) -> ScheduleState:
    with project.database.session() as session:
        found = session.get(ScheduleState, "crash")
    assert found is not None
    return found


def scheduled_runs(project: Project, slot: datetime) -> list[RunInfo]:
    return [r for r in Runs(project.database).list() if r.scheduled_for == slot]


@pytest.mark.parametrize("kill_point", ["before-the-run-is-recorded", "during-a-step"])
def test_a_scheduler_killed_mid_launch_fires_the_slot_once(
    crash: Project, tmp_path: Path, kill_point: str
) -> None:
    marker = tmp_path / "launch.marker"
    toml = crash.root / "shipyard.toml"
    toml.write_text(
        RUNS_TOML + YEARLY + (HOLD.format(marker=marker) if kill_point == "during-a-step" else ""),
        encoding="utf-8",
    )
    slot = seed_due_slot(crash)
    script = tmp_path / "scheduler.py"
    script.write_text(textwrap.dedent(SCHEDULER_SCRIPT), encoding="utf-8")
    url = crash.settings.database_url
    mode = "hold-before-run" if kill_point == "before-the-run-is-recorded" else "run"

    first = start(script, mode, str(crash.root), str(marker), "300", database_url=url)
    try:
        wait_until(lambda: marker.exists() and bool(marker.read_text()), "the launch")
        held = schedule_state(crash)
        assert held.lock_owner is not None
        if kill_point == "before-the-run-is-recorded":
            assert Runs(crash.database).list() == []
            assert held.next_fire_at == slot  # not fired yet: a restart must launch it
        else:
            [running] = scheduled_runs(crash, slot)
            assert (running.status, running.trigger) == ("running", "schedule")
            assert held.last_fire_at == slot  # fired, with the run, in one transaction
    finally:
        kill_hard(first)

    toml.write_text(RUNS_TOML + YEARLY, encoding="utf-8")  # a relaunch would not hang
    restart = start(script, "run", str(crash.root), str(marker), "6", database_url=url)
    try:
        assert restart.wait(timeout=120) == 0
    finally:
        with suppress(ProcessLookupError):
            os.killpg(restart.pid, signal.SIGKILL)

    [run] = scheduled_runs(crash, slot)
    assert len(Runs(crash.database).list()) == 1
    after = schedule_state(crash)
    assert after.last_fire_at == slot
    assert after.next_fire_at == datetime(slot.year + 1, 1, 1, tzinfo=UTC)
    # released, or (the killed scheduler's) expired: free for the next fire time
    assert after.lock_owner is None or after.lock_expires_at < datetime.now(UTC)
    if kill_point == "before-the-run-is-recorded":
        assert run.status == "succeeded", run.error
    else:
        assert run.status == "failed"
        assert "no heartbeat since" in run.error


def test_a_scheduled_run_without_the_lock_is_not_recorded(crash: Project) -> None:
    slot = seed_due_slot(crash)
    with crash.database.session() as session:
        session.execute(
            sa.update(ScheduleState).values(lock_owner="other:1:x", lock_expires_at=slot)
        )
    fire = ScheduledFire("crash", "me:2:y", slot, datetime(slot.year + 1, 1, 1, tzinfo=UTC))
    pipeline = load_module_pipeline(crash.root / "pipelines" / "crash.py")
    with pytest.raises(LockLostError, match="no longer holds the lock of 'crash'"):
        runner_for(crash).run(pipeline, trigger="schedule", fire=fire)
    assert Runs(crash.database).list() == []
    assert schedule_state(crash).next_fire_at == slot


def test_a_lock_held_by_a_process_gone_from_this_host_is_taken_over_at_once(
    crash: Project,
) -> None:
    yearly = {"crash": Schedule("crash", "0 0 1 1 *")}
    slot = seed_due_slot(crash)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = socket.gethostname()[:80]
    launched: list[datetime] = []

    def launch(name: str, fire: ScheduledFire) -> str:
        launched.append(fire.fire_time)
        return "succeeded"

    for holder, taken in [
        (f"elsewhere:{ended.pid}:x", False),  # another host: wait for its lease
        (f"{host}:{os.getpid()}:x", False),  # alive here
        (f"{host}:{ended.pid}:x", True),  # gone: its lease need not expire
    ]:
        with crash.database.session() as session:
            session.execute(
                sa.update(ScheduleState).values(
                    lock_owner=holder, lock_expires_at=datetime.now(UTC) + timedelta(hours=1)
                )
            )
        scheduler = Scheduler(crash.settings, crash.database, launch, schedules=yearly)
        assert scheduler.tick() == (["crash"] if taken else []), holder
        scheduler.wait()
        scheduler.close()
    assert launched == [slot]
    assert schedule_state(crash).lock_owner is None
