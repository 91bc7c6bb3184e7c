"""The child-process side of a step: import it, read its inputs, call it, stage its outputs.

Each attempt of a step runs in a fresh process started with the ``spawn`` method, so
the parent's threads and open connections never leak into it. The child gets a
:class:`StepTask` (plain data), opens its own stores, and sends back one message:
``{"ok": True, "outputs": {...}}`` with the *staged* outputs, or
``{"ok": False, "error": "ValueError: ..."}``. It records nothing: the parent commits
the staged datasets, so a step that fails or is killed leaves no dataset version.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.datasets import Datasets
from shipyard.pipelines.cache import RUN_ID_PARAM
from shipyard.pipelines.graph import MODULE_PREFIX, load_module_pipeline
from shipyard.pipelines.steps import Step, is_dataset
from shipyard.store import ArtifactStore, Database

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class StepTask:
    """Everything a child process needs to run one attempt of one step."""

    database_url: str
    artifacts_url: str
    actor: str
    run_id: str
    pipeline: str
    step: str
    attempt: int
    module: str
    qualname: str
    module_path: str | None
    inputs: dict[str, dict[str, Any]]
    outputs: tuple[str, ...]
    params: dict[str, Any]
    log_dir: str


def task_target(step: Step) -> tuple[str, str, str | None]:
    """Where a child finds ``step``: its module name, qualified name and file."""
    return step.func.__module__, step.func.__qualname__, step.module_path


def load_function(task: StepTask) -> Callable[..., Any]:
    """Import the step's function: a project pipeline module by its file, else by name."""
    if task.module.startswith(MODULE_PREFIX) and task.module_path:
        name = task.module.removeprefix(MODULE_PREFIX)
        pipeline = load_module_pipeline(Path(task.module_path), name)
        return pipeline.steps[task.step].func
    target: Any = importlib.import_module(task.module)
    for part in task.qualname.split("."):
        target = getattr(target, part)
    if isinstance(target, Step):
        return target.func
    if not callable(target):
        raise InvalidArgumentError(f"{task.module}.{task.qualname} is not a function")
    return target  # type: ignore[no-any-return]


def split_outputs(step: str, outputs: tuple[str, ...], result: Any) -> dict[str, Any]:
    """Map a step's return value onto its declared outputs."""
    if not outputs:
        return {}
    if len(outputs) == 1:
        return {outputs[0]: result}
    if isinstance(result, Mapping):
        by_name = {item.split("/", 1)[1]: item for item in outputs}
        mapped = {by_name.get(str(k), str(k)): v for k, v in result.items()}
        if set(mapped) == set(outputs):
            return mapped
        got = ", ".join(map(str, result)) or "nothing"
    elif isinstance(result, tuple) and len(result) == len(outputs):
        return dict(zip(outputs, result, strict=True))
    else:
        got = type(result).__name__
    raise InvalidArgumentError(
        f"step {step!r} declares outputs {', '.join(outputs)} but returned {got}; return a dict "
        "keyed by output (or a tuple in the declared order)"
    )


def _read_inputs(task: StepTask, datasets: Datasets) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param, described in task.inputs.items():
        if described["kind"] == "dataset":
            values[param] = datasets.read(str(described["ref"]))
        else:
            # Objects are written by this project's own steps (cloudpickle.dumps below) into
            # its own store, verified by sha256 on read: loading them is trusted like the
            # project's code itself, never data from elsewhere.
            values[param] = cloudpickle.loads(datasets.artifacts.get_bytes(described["digest"]))
    return values


def _stage(item: str, value: Any, datasets: Datasets) -> dict[str, Any]:
    if is_dataset(item):
        staged = datasets.stage(item, value)
        return {"kind": "dataset", **dataclasses.asdict(staged)}
    return {"kind": "artifact", "digest": datasets.artifacts.put_bytes(cloudpickle.dumps(value))}


def execute(task: StepTask) -> dict[str, dict[str, Any]]:
    """Run one attempt in this process; return the staged outputs (nothing is recorded)."""
    func = load_function(task)
    database = Database(task.database_url)
    try:
        datasets = Datasets(database, ArtifactStore(task.artifacts_url), task.actor)
        arguments = {**_read_inputs(task, datasets), **task.params}
        if RUN_ID_PARAM in inspect.signature(func).parameters:
            arguments[RUN_ID_PARAM] = task.run_id
        result = func(**arguments)
        values = split_outputs(task.step, task.outputs, result)
        return {item: _stage(item, value, datasets) for item, value in values.items()}
    finally:
        database.dispose()


@contextmanager
def captured(log_dir: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 and the root logger to ``stdout.log`` / ``stderr.log``.

    Redirecting the descriptors (not just ``sys.stdout``) also catches C libraries and
    subprocesses. Attempts append, so every attempt's output is kept.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    old_streams = sys.stdout, sys.stderr
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    with (log_dir / "stdout.log").open("ab") as out, (log_dir / "stderr.log").open("ab") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            root.handlers, root.level = old_handlers, old_level
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def child_main(task: StepTask, channel: Connection) -> None:
    """Entry point of the child process: run the attempt and report through ``channel``."""
    # A step that opens the project itself (the standard road's register and gate) must
    # reach the stores this run uses, whatever the environment the parent was started in.
    os.environ["SHIPYARD_DATABASE_URL"] = task.database_url
    os.environ["SHIPYARD_ARTIFACTS"] = task.artifacts_url
    os.environ["SHIPYARD_USER"] = task.actor
    message: dict[str, Any]
    try:
        with captured(Path(task.log_dir)):
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            banner = f"--- {task.pipeline}.{task.step} attempt {task.attempt} ({stamp}) ---"
            print(banner, flush=True)
            print(banner, file=sys.stderr, flush=True)
            try:
                message = {"ok": True, "outputs": execute(task)}
            except BaseException as exc:  # the parent decides whether to retry
                traceback.print_exc()
                message = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    except BaseException as exc:  # the log folder itself failed: still report
        message = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        channel.send(message)
    finally:
        channel.close()
