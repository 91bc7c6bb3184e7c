"""Cron schedules for pipelines, and the scheduler that fires them.

A pipeline gets a schedule from a ``[schedules.NAME]`` table of shipyard.toml::

    [schedules.churn]
    cron = "0 6 * * *"        # croniter syntax
    timezone = "Europe/Paris"  # zoneinfo name the cron is read in (default UTC)
    missed = "latest"          # latest | all | skip: what to do about fire times missed
    enabled = true             # while no scheduler was running

The :class:`Scheduler` keeps each pipeline's last and next fire time in the
``schedule_state`` table (:class:`~shipyard.datasets.run_records.ScheduleStates`), so a
restart knows what it missed. Before it launches a run it takes the pipeline's lock, a
lease (owner and expiry) taken with one conditional ``UPDATE``: two schedulers, in two
processes, on SQLite or PostgreSQL, never run one pipeline at once, and the lease of a
scheduler that died expires and is taken over (at once if it ran on this host: its pid is gone).
Runs are launched in threads, so one long pipeline does not hold up the others.

A fire time is recorded as fired in the transaction that records the run it launches
(:class:`~shipyard.datasets.run_records.ScheduledFire`): a scheduler killed before that
leaves the fire time due (the next scheduler launches it once its lease expires), one
killed after it leaves the run, which its missing heartbeat marks ``failed``. Each fire
time is launched once. A launch that keeps no run (a monitor) is recorded when it ends,
so one cut short by a crash runs again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import Settings
from shipyard.datasets import Datasets
from shipyard.datasets.run_records import (
    FAILED,
    LockLostError,
    Runs,
    ScheduledFire,
    ScheduleStates,
)
from shipyard.pipelines.heartbeat import fail_stale_runs
from shipyard.pipelines.resolve import resolve_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.store import ArtifactStore, Database

log = logging.getLogger(__name__)

MissedPolicy = Literal["latest", "all", "skip"]
#: A launch callable: runs the named pipeline for one fire time to the end and returns its
#: final status. A launch that records a run passes the fire to ``Runner.run(fire=...)``,
#: so the fire is recorded with the run; the scheduler records it otherwise.
Launch = Callable[[str, ScheduledFire], str]
Clock = Callable[[], datetime]

#: The ``trigger`` recorded on runs the scheduler launches.
TRIGGER = "schedule"
DEFAULT_LEASE = timedelta(minutes=5)
#: A fire time older than this when the scheduler sees it counts as missed.
DEFAULT_GRACE = timedelta(minutes=1)


class ScheduleConfig(BaseModel):
    """One ``[schedules.NAME]`` table, validated."""

    model_config = ConfigDict(extra="forbid")

    cron: str
    timezone: str = "UTC"
    missed: MissedPolicy = "latest"
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            croniter(value)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(
                f"{value!r} is not a cron expression ({exc}); use five fields "
                "'MINUTE HOUR DAY MONTH WEEKDAY', e.g. '0 6 * * *'"
            ) from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            return ZoneInfo(value).key
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a time zone; use e.g. 'UTC', 'Europe/Paris'"
            ) from exc


@dataclass(frozen=True)
class Schedule:
    """When one pipeline fires."""

    pipeline: str
    cron: str
    timezone: str = "UTC"
    missed: MissedPolicy = "latest"
    enabled: bool = True

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware), in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        found: datetime = croniter(self.cron, local).get_next(datetime)
        return found.astimezone(ZoneInfo("UTC"))

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire time in ``[start, end]``, oldest first, in UTC."""
        times: list[datetime] = []
        moment = self.next_after(start - timedelta(microseconds=1))
        while moment <= end:
            times.append(moment)
            moment = self.next_after(moment)
        return times

    def due(
        self, next_fire: datetime, now: datetime, grace: timedelta = DEFAULT_GRACE
    ) -> list[datetime]:
        """The fire times to launch now, given the stored next fire time and the missed policy.

        Fire times from ``next_fire`` to ``now`` are due; those older than ``grace`` were
        missed. ``latest`` launches the newest due one, ``all`` each in order, ``skip`` only
        one that is not missed.
        """
        times = self.fire_times(next_fire, now)
        if self.missed == "all":
            return times
        if self.missed == "skip":
            times = [t for t in times if now - t <= grace]
        return times[-1:]


def load_schedules(settings: Settings) -> dict[str, Schedule]:
    """Validate every ``[schedules.NAME]`` table; raise ConfigError naming a wrong one."""
    schedules: dict[str, Schedule] = {}
    for name, table in settings.schedules.items():
        try:
            config = ScheduleConfig.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'table'}: {_reason(err)}"
                for err in exc.errors()
            )
            raise ConfigError(
                f"[schedules.{name}] in {settings.root / 'shipyard.toml'} is invalid: {problems}"
            ) from exc
        schedules[name] = Schedule(name, **config.model_dump())
    return schedules


def _reason(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field; the fields are cron, timezone, missed and enabled"
    return str(err["msg"]).removeprefix("Value error, ")


def owner_gone(owner: str) -> bool:
    """True when ``owner`` (``HOST:PID:ID``) names a process of this host that has ended.

    A scheduler killed here is taken over at once rather than when its lease expires. A
    mistake is harmless: a run is recorded only under the lock, so the scheduler that lost
    it launches nothing more.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname()[:80] or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it exists, as another user
        return False
    return False


@dataclass
class Fire:
    """One launch of a pipeline for one fire time, and how it ended."""

    pipeline: str
    fire_time: datetime
    status: str = "running"
    error: str = ""


class Scheduler:
    """Fires the project's enabled schedules; call :meth:`tick` repeatedly, or :meth:`run`.

    ``launch(pipeline, fire)`` runs a pipeline and returns its final status; ``clock`` returns
    the current (aware) time, so tests move time instead of sleeping; ``owner`` names
    this scheduler in locks (default ``<host>:<pid>:<uuid>``). Leases last ``lease`` and
    are renewed while runs last.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        launch: Launch,
        *,
        clock: Clock = utcnow,
        owner: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        grace: timedelta = DEFAULT_GRACE,
        schedules: Mapping[str, Schedule] | None = None,
        on_fire: Callable[[Fire], None] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.states = ScheduleStates(database)
        self.runs = Runs(database)
        self.launch = launch
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.lease = lease
        self.grace = grace
        self.schedules = dict(load_schedules(settings) if schedules is None else schedules)
        self.on_fire = on_fire
        self.fires: list[Fire] = []
        self._jobs: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # launch nothing more
        self._closed = threading.Event()  # stop renewing leases
        self._renewer: threading.Thread | None = None

    # -- one pass ---------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Launch every pipeline that is due and free; return the pipelines launched.

        Runs whose process stopped (no heartbeat) are marked ``failed`` first.
        """
        fail_stale_runs(self.runs, self.settings)
        busy = self.running
        launched: list[str] = []
        for name, schedule in self.schedules.items():
            if not schedule.enabled or name in busy:
                continue
            times = self._claim(schedule)
            if times:
                self._start(schedule, times)
                launched.append(name)
        return launched

    def _claim(self, schedule: Schedule) -> list[datetime]:
        """Take the pipeline's lock if it is due and free; return the fire times to launch."""
        now = self.clock()
        # First sight of a pipeline, or all missed and skipped: the next cron time from now.
        claim = self.states.claim(
            schedule.pipeline,
            owner=self.owner,
            now=now,
            expires_at=now + self.lease,
            next_fire_at=schedule.next_after(now),
            due=lambda next_fire: schedule.due(next_fire, now, self.grace),
            gone=owner_gone,
        )
        if claim is None:
            return []
        if claim.taken_from is not None:
            log.warning(
                "took over %s from %s (its lease expired or its process is gone)",
                schedule.pipeline,
                claim.taken_from,
            )
        return claim.times

    def _start(self, schedule: Schedule, times: list[datetime]) -> None:
        thread = threading.Thread(
            target=self._job,
            args=(schedule, times),
            name=f"shipyard-schedule-{schedule.pipeline}",
            daemon=True,
        )
        with self._lock:
            self._jobs[schedule.pipeline] = thread
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_loop, name="leases", daemon=True)
            self._renewer.start()
        thread.start()

    def _job(self, schedule: Schedule, times: list[datetime]) -> None:
        try:
            for fire_time in times:
                if self._stopping.is_set():
                    return
                slot = ScheduledFire(
                    schedule.pipeline, self.owner, fire_time, schedule.next_after(fire_time)
                )
                fire = Fire(schedule.pipeline, fire_time)
                with self._lock:
                    self.fires.append(fire)
                try:
                    fire.status = self.launch(schedule.pipeline, slot)
                except LockLostError as exc:
                    fire.status, fire.error = FAILED, exc.message
                    log.error("%s", exc.message)
                except Exception as exc:  # a failed launch must not kill the scheduler
                    fire.status, fire.error = FAILED, f"{type(exc).__name__}: {exc}"
                    log.exception("launching %s failed", schedule.pipeline)
                if self.on_fire is not None:
                    self.on_fire(fire)
                # A run recorded the fire already (this repeats it); a launch that failed
                # before its run was recorded, or keeps none, is recorded here.
                if not self.states.record(slot):
                    log.error("lost the lock of %s after %s", schedule.pipeline, fire_time)
                    return
        finally:
            self._release([schedule.pipeline])

    # -- leases -----------------------------------------------------------------------

    def renew(self) -> None:
        """Extend the lease of every pipeline this scheduler is running."""
        with self._lock:
            running = list(self._jobs)
        if running:
            self.states.renew(running, owner=self.owner, expires_at=self.clock() + self.lease)

    def _renew_loop(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._closed.wait(interval):
            try:
                self.renew()
            except Exception:  # a database hiccup: try again at the next interval
                log.exception("renewing schedule leases failed")

    def _release(self, pipelines: list[str] | None = None) -> None:
        """Release the locks of ``pipelines`` (default: every lock this scheduler holds)."""
        self.states.release(self.owner, pipelines)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def running(self) -> list[str]:
        """Pipelines this scheduler is running now."""
        with self._lock:
            for name in [n for n, thread in self._jobs.items() if not thread.is_alive()]:
                del self._jobs[name]
            return sorted(self._jobs)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for launched runs to finish; True if none is left running."""
        with self._lock:
            jobs = list(self._jobs.values())
        for thread in jobs:
            thread.join(timeout)
        return not self.running

    def run(self, *, duration: float | None = None, interval: float = 5.0) -> None:
        """Tick every ``interval`` seconds until :meth:`stop` (or ``duration`` seconds pass)."""
        end = None if duration is None else time.monotonic() + duration
        while not self._stopping.is_set():
            self.tick()
            left = interval if end is None else end - time.monotonic()
            if left <= 0:
                break
            self._stopping.wait(min(interval, left))

    def stop(self) -> None:
        """Ask :meth:`run` to return and launch nothing more; running launches finish."""
        self._stopping.set()

    def close(self) -> None:
        """Stop renewing and release every lock this scheduler holds (runs still going lose it)."""
        self._stopping.set()
        self._closed.set()
        self._release()


def make_launcher(
    settings: Settings,
    database: Database,
    artifacts: ArtifactStore,
    datasets: Datasets,
    *,
    workers: int = 2,
) -> Launch:
    """A launch callable that runs a pipeline with shipyard's runner (``trigger="schedule"``)."""

    def launch(pipeline: str, fire: ScheduledFire) -> str:
        # One runner per launch: launches of different pipelines run in parallel threads.
        runner = Runner(settings, database, artifacts, datasets, workers=workers)
        found = resolve_pipeline(settings, pipeline)
        return runner.run(found, trigger=TRIGGER, fire=fire).status

    return launch
