"""Schedules: cron and time zones, missed-run policies, and the lock two schedulers share."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from tests.helpers import make_settings
from typer.testing import CliRunner, Result

from shipyard import ConfigError, Settings
from shipyard.cli import orchestrate
from shipyard.cli.context import Group
from shipyard.datasets.run_records import Runs, ScheduledFire
from shipyard.pipelines.schedule import Schedule, Scheduler, load_schedules
from shipyard.store import Database
from shipyard.store.tables import ScheduleState

HOURLY = '[schedules.nightly]\ncron = "0 * * * *"\nmissed = "{missed}"\n'


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    opened = Database.open(database_url)
    yield opened
    opened.dispose()


def settings_for(tmp_path: Path, database: Database, toml: str) -> Settings:
    return make_settings(tmp_path / "proj", database.url.render_as_string(False), toml)


def state(database: Database, pipeline: str = "nightly") -> ScheduleState:
    with database.session() as session:
        found = session.get(ScheduleState, pipeline)
    assert found is not None
    return found


class Recorder:
    """A launch callable that remembers what it launched."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def __call__(self, name: str, fire: ScheduledFire) -> str:
        self.launched.append(name)
        return "succeeded"


# -- cron and time zones ----------------------------------------------------------------


def test_next_fire_is_read_in_the_schedules_time_zone() -> None:
    paris = Schedule("p", "0 6 * * *", timezone="Europe/Paris")
    # 06:00 in Paris is 05:00 UTC in winter (CET) and 04:00 UTC in summer (CEST).
    assert paris.next_after(datetime(2026, 1, 15, 4, tzinfo=UTC)) == datetime(
        2026, 1, 15, 5, tzinfo=UTC
    )
    assert paris.next_after(datetime(2026, 7, 15, 4, tzinfo=UTC)) == datetime(
        2026, 7, 16, 4, tzinfo=UTC
    )
    utc = Schedule("p", "0 6 * * *")
    assert utc.next_after(datetime(2026, 1, 15, 6, tzinfo=UTC)) == datetime(
        2026, 1, 16, 6, tzinfo=UTC
    )


def test_fire_times_cross_a_daylight_saving_change() -> None:
    # Paris moves its clocks from 02:00 to 03:00 on 2026-03-29: the day is 23 hours long.
    paris = Schedule("p", "0 12 * * *", timezone="Europe/Paris")
    times = paris.fire_times(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))
    assert times == [datetime(2026, 3, 28, 11, tzinfo=UTC), datetime(2026, 3, 29, 10, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'cron = "61 * * * *"',
            r"\[schedules.nightly\].*cron: '61 \* \* \* \*' is not a cron.*range",
        ),
        (
            'cron = "0 6 * * *"\ntimezone = "Mars/Olympus"',
            r"timezone: 'Mars/Olympus' is not a time",
        ),
        ('cron = "0 6 * * *"\nmissed = "some"', r"missed: Input should be 'latest', 'all' or"),
        ('cron = "0 6 * * *"\ncorn = 1', r"corn: unknown field; the fields are cron, timezone"),
        ("enabled = true", r"\[schedules.nightly\].*cron: Field required"),
    ],
)
def test_invalid_schedule_tables_name_the_table_and_field(
    tmp_path: Path, table: str, message: str
) -> None:
    settings = make_settings(tmp_path, "sqlite://", f"[schedules.nightly]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_schedules(settings)


# -- missed runs ------------------------------------------------------------------------


@pytest.mark.parametrize(("missed", "expected"), [("latest", 1), ("all", 5), ("skip", 0)])
def test_missed_policy_after_downtime(
    tmp_path: Path, database: Database, missed: str, expected: int
) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed=missed))
    clock = Clock(at(0, 30))
    launch = Recorder()
    scheduler = Scheduler(settings, database, launch, clock=clock)
    assert scheduler.tick() == []  # first sight: remember 01:00 as the next fire
    assert state(database).next_fire_at == at(1)

    clock.now = at(5, 30)  # the scheduler was down from 01:00 to 05:30
    scheduler.tick()
    scheduler.wait()
    scheduler.close()

    assert len(launch.launched) == expected
    fired = [f.fire_time for f in scheduler.fires]
    assert fired == {"latest": [at(5)], "all": [at(h) for h in range(1, 6)], "skip": []}[missed]
    after = state(database)
    assert after.next_fire_at == at(6)
    assert after.last_fire_at == (at(5) if expected else None)
    assert after.lock_owner is None


def test_a_fire_on_time_is_launched_even_when_missed_runs_are_skipped(
    tmp_path: Path, database: Database
) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="skip"))
    clock = Clock(at(0, 59))
    launch = Recorder()
    scheduler = Scheduler(settings, database, launch, clock=clock)
    scheduler.tick()
    clock.now = at(1, 0) + timedelta(seconds=5)
    assert scheduler.tick() == ["nightly"]
    scheduler.wait()
    assert scheduler.tick() == []  # 02:00 is not due yet
    scheduler.close()
    assert launch.launched == ["nightly"]


def test_disabled_schedule_never_fires(tmp_path: Path, database: Database) -> None:
    toml = HOURLY.format(missed="all") + "enabled = false\n"
    settings = settings_for(tmp_path, database, toml)
    launch = Recorder()
    scheduler = Scheduler(settings, database, launch, clock=Clock(at(5, 30)))
    assert scheduler.tick() == []
    assert launch.launched == []


def test_a_failing_launch_is_recorded_and_releases_the_lock(
    tmp_path: Path, database: Database
) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    clock = Clock(at(0, 30))

    def launch(name: str, fire: ScheduledFire) -> str:
        raise RuntimeError("boom")

    scheduler = Scheduler(settings, database, launch, clock=clock)
    scheduler.tick()
    clock.now = at(1, 0, 2) + timedelta(seconds=1)
    scheduler.tick()
    scheduler.wait()
    assert [(f.status, f.error) for f in scheduler.fires] == [("failed", "RuntimeError: boom")]
    assert state(database).lock_owner is None


# -- locks ------------------------------------------------------------------------------


def seed(database: Database, **values: object) -> None:
    with database.session() as session:
        session.add(ScheduleState(pipeline="nightly", **values))


def test_an_expired_lease_is_taken_over(tmp_path: Path, database: Database) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    seed(database, next_fire_at=at(5), lock_owner="dead:1:x", lock_expires_at=at(5, 10))
    launch = Recorder()
    scheduler = Scheduler(settings, database, launch, clock=Clock(at(5, 30)))
    assert scheduler.tick() == ["nightly"]
    scheduler.wait()
    assert launch.launched == ["nightly"]
    assert state(database).lock_owner is None


def test_a_live_lease_is_respected(tmp_path: Path, database: Database) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    seed(database, next_fire_at=at(5), lock_owner="alive:1:x", lock_expires_at=at(5, 40))
    launch = Recorder()
    scheduler = Scheduler(settings, database, launch, clock=Clock(at(5, 30)))
    assert scheduler.tick() == []
    assert launch.launched == []
    assert state(database).lock_owner == "alive:1:x"


def test_the_lease_is_renewed_while_the_run_lasts(tmp_path: Path, database: Database) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    seed(database, next_fire_at=at(5))
    clock = Clock(at(5, 0, 2))
    started, finish = threading.Event(), threading.Event()

    def launch(name: str, fire: ScheduledFire) -> str:
        started.set()
        finish.wait(10)
        return "succeeded"

    scheduler = Scheduler(
        settings, database, launch, clock=clock, owner="me", lease=timedelta(hours=1)
    )
    scheduler.tick()
    assert started.wait(10)
    assert state(database).lock_expires_at == at(6, 0, 2)
    clock.now = at(5, 50, 2)
    scheduler.renew()
    assert state(database).lock_expires_at == at(6, 50, 2)
    assert state(database).lock_owner == "me"
    finish.set()
    scheduler.wait()
    assert state(database).lock_owner is None


RACER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path

from shipyard import Settings
from shipyard.datasets.run_records import Runs, ScheduledFire
from shipyard.pipelines.schedule import Scheduler
from shipyard.store import Database

root, url, out, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
settings = Settings.load(root, environ={"SHIPYARD_DATABASE_URL": url})
database = Database.open(url)

def launch(name, fire):
    with out.open("a") as stream:
        stream.write(f"{name} {sys.argv[5]}\\n")
    time.sleep(0.3)
    return "succeeded"

now = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)
scheduler = Scheduler(settings, database, launch, clock=lambda: now)
while time.time() < start:
    pass
until = time.time() + 1.5
while time.time() < until:  # keep ticking: a stale read after the other's release must not fire
    scheduler.tick()
    time.sleep(0.01)
scheduler.wait()
scheduler.close()
"""


def test_two_schedulers_in_two_processes_launch_a_due_pipeline_once(
    tmp_path: Path, database: Database
) -> None:
    url = database.url.render_as_string(False)
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    seed(database, next_fire_at=at(5))
    script, out = tmp_path / "racer.py", tmp_path / "launches.txt"
    script.write_text(textwrap.dedent(RACER), encoding="utf-8")
    start = time.time() + 2.0  # both processes are imported and connected by then
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), str(settings.root), url, str(out), str(start), str(i)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for i in range(2)
    ]
    assert [racer.wait(60) for racer in racers] == [0, 0]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1, lines
    assert state(database).last_fire_at == at(5)
    assert state(database).lock_owner is None


# -- the command ------------------------------------------------------------------------


def scheduler_once(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Result:
    """``shipyard scheduler --once`` on the project of ``settings``."""
    app = typer.Typer(cls=Group)
    app.command()(orchestrate.scheduler)
    app.command("noop")(lambda: None)  # two commands: Typer keeps the command name
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", database.url.render_as_string(False))
    return CliRunner().invoke(app, ["scheduler", "--once", "--project", str(settings.root)])


PIPELINE = """
import pandas as pd
from shipyard import step


@step(outputs="raw/numbers")
def numbers() -> pd.DataFrame:
    return pd.DataFrame({"n": [1, 2, 3]})
"""


def test_scheduler_once_runs_the_due_pipeline(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        tmp_path, database, HOURLY.format(missed="latest").replace("nightly", "numbers")
    )
    (settings.root / "pipelines").mkdir()
    (settings.root / "pipelines" / "numbers.py").write_text(PIPELINE, encoding="utf-8")
    with database.session() as session:  # due: the last fire time was missed
        session.add(
            ScheduleState(pipeline="numbers", next_fire_at=datetime.now(UTC) - timedelta(hours=1))
        )
    result = scheduler_once(settings, database, monkeypatch)

    assert result.exit_code == 0, result.output
    assert "numbers" in result.output
    assert "succeeded" in result.output
    [run] = Runs(database).list("numbers")
    assert (run.status, run.trigger) == ("succeeded", "schedule")
    after = state(database, "numbers")
    assert after.last_fire_at is not None
    assert after.next_fire_at is not None
    assert after.next_fire_at > datetime.now(UTC)
    assert after.lock_owner is None


def test_scheduler_without_schedules_says_how_to_add_one(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, database, "")
    result = scheduler_once(settings, database, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "[schedules.PIPELINE]" in result.output


def test_scheduler_refuses_a_schedule_for_an_unknown_pipeline(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, database, HOURLY.format(missed="latest"))
    result = scheduler_once(settings, database, monkeypatch)
    assert result.exit_code == 1
    assert "[schedules.nightly] in shipyard.toml names no pipeline" in result.output
