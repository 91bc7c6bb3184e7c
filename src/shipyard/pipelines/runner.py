"""The runner: execute a pipeline's steps in dependency order, in parallel child processes.

::

    runner = Runner(settings, project.database, project.artifacts, project.datasets,
                    workers=2, console=Console())
    info = runner.run(pipeline, params={"train": {"max_depth": 6}})

Each attempt of a step runs in a fresh ``spawn`` process (see :mod:`.execute`); up to
``workers`` independent steps run at once. A step whose code, inputs and parameters
match an earlier successful run is reused (``cached``) without starting a process. A
step's dataset outputs are committed by this process only after the step succeeded, in
the one transaction that records the step as succeeded: a failed, timed-out or killed
step records no dataset version, and no version is ever recorded without its step.

While a run goes on, a thread writes its heartbeat (:mod:`.heartbeat`); a run whose
process was killed is marked ``failed`` by the next run, ``shipyard runs list`` or
scheduler start.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import InvalidArgumentError
from shipyard.core.settings import Settings
from shipyard.datasets import DatasetInfo, Datasets
from shipyard.datasets.run_records import (
    CACHED,
    DONE,
    FAILED,
    KILLED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    RunInfo,
    Runs,
    ScheduledFire,
)
from shipyard.datasets.store import StagedFrame
from shipyard.pipelines.cache import cache_key, describe_dataset, find_cached
from shipyard.pipelines.children import Attempt, Terminated, sigterm_raises, wait_for
from shipyard.pipelines.execute import StepTask, task_target
from shipyard.pipelines.graph import Pipeline
from shipyard.pipelines.heartbeat import Heartbeat, fail_stale_runs
from shipyard.pipelines.journal import new_run_id
from shipyard.pipelines.plan import Plan, make_plan
from shipyard.pipelines.progress import RunDisplay
from shipyard.store import ArtifactStore, Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Longest wait between checks of timeouts and retries.
POLL_SECONDS = 0.5


@dataclass
class _State:
    plan: Plan
    run_id: str
    log_root: Path
    use_cache: bool
    status: dict[str, str]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    running: dict[str, Attempt] = field(default_factory=dict)

    def outcome(self) -> tuple[str, str]:
        for name in self.plan.steps:
            if self.status[name] == FAILED:
                tries = self.attempts.get(name, 0)
                plural = "attempt" if tries == 1 else "attempts"
                return FAILED, f"step {name!r} failed after {tries} {plural}: {self.errors[name]}"
        return SUCCEEDED, ""


def _staged_frame(datasets: Datasets, entry: Mapping[str, Any]) -> StagedFrame:
    """A child's staged frame, or a stored version (from a cached run) to record again."""
    if "ref" not in entry:
        return StagedFrame(**{k: v for k, v in entry.items() if k != "kind"})
    info = datasets.get(str(entry["ref"]))
    return StagedFrame(
        zone=info.zone,
        name=info.name,
        fingerprint=info.fingerprint,
        artifact_digest=info.artifact_digest,
        columns=info.columns,
        row_count=info.row_count,
    )


class Runner:
    """Runs pipelines of one project (its settings and stores)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        artifacts: ArtifactStore,
        datasets: Datasets,
        *,
        workers: int = 2,
        console: Console | None = None,
    ) -> None:
        if workers < 1:
            raise InvalidArgumentError(f"workers must be at least 1, got {workers}")
        if datasets.database.url != database.url:
            # a step's outputs and its success are one transaction: one database for both
            raise InvalidArgumentError(
                "the runner's datasets must live in the runner's database, got "
                f"{datasets.database.url.render_as_string()} and "
                f"{database.url.render_as_string()}"
            )
        self.settings = settings
        self.database = database
        self.runs = Runs(database)
        self.artifacts = artifacts
        self.datasets = datasets
        self.workers = workers
        self.console = console

    def run(
        self,
        pipeline: Pipeline,
        *,
        steps: Sequence[str] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        use_cache: bool = True,
        trigger: str = "manual",
        fire: ScheduledFire | None = None,
    ) -> RunInfo:
        """Run ``pipeline`` (or only ``steps``) and return the recorded run.

        Everything is checked before a step starts (step and parameter names, inputs
        that must already be stored). A failed step does not raise: the run comes back
        with status ``failed`` and ``error`` naming the step. KeyboardInterrupt and
        SIGTERM stop every child, mark the run ``killed`` and propagate. Runs whose
        process was killed earlier (no heartbeat) are marked ``failed`` first. ``fire``
        (from the scheduler) is recorded on its schedule with the run, in one transaction.
        """
        fail_stale_runs(self.runs, self.settings)
        configured = self.settings.pipelines.get(pipeline.name, {}).get("params", {})
        plan = make_plan(
            pipeline, steps=steps, configured=configured, given=params,
            database=self.database, datasets=self.datasets, artifacts=self.artifacts,
        )  # fmt: skip
        run_id = new_run_id()
        log_root = self.settings.state_dir / "runs" / run_id
        self.runs.create(
            run_id=run_id, pipeline=pipeline.name, steps=plan.steps,
            params=plan.params, trigger=trigger, actor=self.settings.actor, log_root=log_root,
            fire=fire,
        )  # fmt: skip
        state = _State(plan, run_id, log_root, use_cache, dict.fromkeys(plan.steps, PENDING))
        display = RunDisplay(self.console, pipeline.name, run_id, plan.steps)
        beating = Heartbeat(self.runs, run_id, self.settings.runs.heartbeat_seconds)
        with display, beating:
            try:
                with sigterm_raises():
                    self._drive(state, display)
            except (KeyboardInterrupt, Terminated) as exc:
                self._abort(state, display, KILLED, f"interrupted ({exc or type(exc).__name__})")
                if isinstance(exc, Terminated):
                    raise SystemExit(128 + signal.SIGTERM) from exc
                raise
            except BaseException as exc:
                self._abort(state, display, FAILED, f"{type(exc).__name__}: {exc}")
                raise
        status, error = state.outcome()
        self.runs.finish(run_id, status, error)
        info = Runs(self.database).get(run_id)
        display.summary(info)
        return info

    # -- scheduling ---------------------------------------------------------------------

    def _drive(self, state: _State, display: RunDisplay) -> None:
        while True:
            self._start_ready(state, display)
            if not state.running and not state.retry_at:
                return
            self._wait(state, display)

    def _start_ready(self, state: _State, display: RunDisplay) -> None:
        now = time.monotonic()
        for name, due in sorted(state.retry_at.items(), key=lambda item: item[1]):
            if due <= now and len(state.running) < self.workers:
                del state.retry_at[name]
                self._start(state, name, state.attempts[name] + 1, display)
        progressed = True
        while progressed:  # a cache hit or a skip may make further steps ready
            progressed = False
            for name in state.plan.steps:
                if state.status[name] != PENDING:
                    continue
                upstream = [u for u in state.plan.pipeline.upstream(name) if u in state.status]
                broken = [u for u in upstream if state.status[u] in (FAILED, SKIPPED, KILLED)]
                if broken:
                    self._skip(state, name, broken[0], display)
                    progressed = True
                elif all(state.status[u] in DONE for u in upstream):
                    self._prepare(state, name)
                    if self._reuse(state, name, display):
                        progressed = True
                    elif len(state.running) < self.workers:
                        self._start(state, name, 1, display)

    def _prepare(self, state: _State, name: str) -> None:
        step = state.plan.pipeline.steps[name]
        inputs: dict[str, Any] = {}
        for item in step.inputs.values():
            producer = state.plan.pipeline.producers.get(item)
            if producer in state.outputs:
                inputs[item] = state.outputs[producer][item]
            else:
                inputs[item] = state.plan.external[item]
        state.inputs[name] = inputs
        state.keys[name] = cache_key(
            step, state.plan.pipeline.name, inputs, state.plan.params[name]
        )

    def _reuse(self, state: _State, name: str, display: RunDisplay) -> bool:
        if not (state.use_cache and state.plan.pipeline.steps[name].cache):
            return False
        found = find_cached(
            state.keys[name], database=self.database, datasets=self.datasets,
            artifacts=self.artifacts,
        )  # fmt: skip
        if found is None:
            return False
        now = utcnow()
        outputs = self._land(state, name, found, status=CACHED, cache_key=state.keys[name],
            inputs=state.inputs[name], started_at=now, finished_at=now,
        )  # fmt: skip
        state.status[name] = CACHED
        state.outputs[name] = outputs
        display.update(name, CACHED, note="reused")
        return True

    def _skip(self, state: _State, name: str, cause: str, display: RunDisplay) -> None:
        reason = f"skipped: upstream step {cause!r} did not succeed"
        self.runs.update_step(state.run_id, name, status=SKIPPED, error=reason)
        state.status[name] = SKIPPED
        display.update(name, SKIPPED, note=f"upstream {cause} did not succeed")

    def _start(self, state: _State, name: str, attempt: int, display: RunDisplay) -> None:
        step = state.plan.pipeline.steps[name]
        module, qualname, module_path = task_target(step)
        task = StepTask(
            database_url=self.database.url.render_as_string(hide_password=False),
            artifacts_url=self.artifacts.url,
            actor=self.settings.actor,
            run_id=state.run_id,
            pipeline=state.plan.pipeline.name,
            step=name,
            attempt=attempt,
            module=module,
            qualname=qualname,
            module_path=module_path,
            inputs={param: state.inputs[name][item] for param, item in step.inputs.items()},
            outputs=step.outputs,
            params=state.plan.params[name],
            log_dir=str(state.log_root / name),
        )
        values: dict[str, Any] = {"status": RUNNING, "attempts": attempt}
        if attempt == 1:
            values |= {
                "started_at": utcnow(),
                "cache_key": state.keys[name],
                "inputs": state.inputs[name],
            }
        self.runs.update_step(state.run_id, name, **values)
        state.running[name] = Attempt.start(task, step.timeout)
        state.status[name] = RUNNING
        state.attempts[name] = attempt
        display.update(name, RUNNING, attempt=attempt)

    def _wait(self, state: _State, display: RunDisplay) -> None:
        now = time.monotonic()
        due = [a.deadline for a in state.running.values() if a.deadline is not None]
        due += list(state.retry_at.values())
        ready = wait_for(
            state.running.values(), min([POLL_SECONDS, *(max(0.0, t - now) for t in due)])
        )
        for name, attempt in list(state.running.items()):
            if attempt.ready(ready):
                del state.running[name]
                message = attempt.collect()
                if message["ok"]:
                    self._succeeded(state, name, message["outputs"], display)
                else:
                    self._attempt_failed(state, name, message["error"], display)
            elif attempt.overdue:
                del state.running[name]
                attempt.stop()
                limit = state.plan.pipeline.steps[name].timeout
                self._attempt_failed(state, name, f"timed out after {limit:g} s", display)

    # -- outcomes -----------------------------------------------------------------------

    def _land(
        self, state: _State, name: str, described: Mapping[str, Mapping[str, Any]], **step: Any
    ) -> dict[str, Any]:
        """Commit a step's dataset outputs and its row (``step``'s columns): one transaction.

        ``described`` holds staged frames from a child, or a cached run's outputs, which
        are recorded again so the newest version is what this run produced (identical
        content reuses the newest version). Returns the outputs as recorded on the step.
        Both land or neither does: a crash (or a failed write) in between can leave no
        version of a step that is not recorded as done, so the next run redoes the step.
        """
        frames = [
            _staged_frame(self.datasets, entry)
            for entry in described.values()
            if entry["kind"] == "dataset"
        ]
        landed: dict[str, Any] = {}

        def record_step(session: Session, infos: list[DatasetInfo]) -> None:
            by_item = {f"{i.zone}/{i.name}": describe_dataset(i) for i in infos}
            outputs = {item: by_item.get(item, dict(entry)) for item, entry in described.items()}
            self.runs.update_step(state.run_id, name, session=session, outputs=outputs, **step)
            landed["outputs"] = outputs

        source = f"pipeline {state.plan.pipeline.name} step {name}"
        self.datasets.commit(
            frames, source=source, run_id=state.run_id, step=name, then=record_step
        )
        return dict(landed["outputs"])

    def _succeeded(
        self, state: _State, name: str, staged: dict[str, Any], display: RunDisplay
    ) -> None:
        try:
            outputs = self._land(
                state, name, staged, status=SUCCEEDED, finished_at=utcnow(), error=""
            )
        except Exception as exc:  # e.g. the database went away: the attempt did not land
            self._attempt_failed(
                state, name, f"recording outputs failed: {type(exc).__name__}: {exc}", display
            )
            return
        state.status[name] = SUCCEEDED
        state.outputs[name] = outputs
        display.update(name, SUCCEEDED, attempt=state.attempts[name])

    def _attempt_failed(self, state: _State, name: str, error: str, display: RunDisplay) -> None:
        step = state.plan.pipeline.steps[name]
        tries = state.attempts[name]
        state.errors[name] = error
        if tries <= step.retries:
            delay = step.retry_delay * 2 ** (tries - 1)
            state.retry_at[name] = time.monotonic() + delay
            self.runs.update_step(state.run_id, name, error=f"attempt {tries}: {error}")
            display.update(name, "retrying", attempt=tries, note=f"{error}; retry in {delay:g}s")
            return
        self.runs.update_step(state.run_id, name, status=FAILED, finished_at=utcnow(), error=error)
        state.status[name] = FAILED
        display.update(name, FAILED, attempt=tries, note=error)

    def _abort(self, state: _State, display: RunDisplay, status: str, reason: str) -> None:
        """Stop every child and record the run as ended, without any partial output."""
        for attempt in state.running.values():
            attempt.stop()
        try:
            for name in state.plan.steps:
                if state.status[name] == RUNNING:
                    self.runs.update_step(state.run_id, name, status=KILLED,
                                finished_at=utcnow(), error=reason)  # fmt: skip
                    display.update(name, KILLED, note=reason)
                elif state.status[name] == PENDING:
                    self.runs.update_step(state.run_id, name, status=SKIPPED, error=reason)
            self.runs.finish(state.run_id, status, reason)
        finally:
            state.running.clear()
