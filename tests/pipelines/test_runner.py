"""The runner with real child processes and real databases: order, parallelism, cache, faults."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.helpers import make_settings

from shipyard import ConfigError, NotFoundError, Project
from shipyard.datasets.run_records import RunInfo, Runs
from shipyard.pipelines import Pipeline, load_module_pipeline
from shipyard.pipelines.runner import Runner

EXAMPLES = Path(__file__).parent / "pipelines_for_tests"
DIAMOND_TOML = """
[project]
name = "runner"

[pipelines.diamond.params.double]
factor = 3
"""


def make_project(root: Path, database_url: str, *modules: str, toml: str = "") -> Project:
    """A project whose pipelines/ folder holds copies of the example modules named."""
    settings = make_settings(root, database_url, toml)
    (root / "pipelines").mkdir()
    for name in modules:
        shutil.copy(EXAMPLES / f"{name}.py", root / "pipelines" / f"{name}.py")
    return Project(settings=settings)


def runner_for(project: Project, workers: int = 2) -> Runner:
    return Runner(
        project.settings, project.database, project.artifacts, project.datasets, workers=workers
    )


def pipeline_of(project: Project, name: str) -> Pipeline:
    return load_module_pipeline(project.root / "pipelines" / f"{name}.py")


def statuses(info: RunInfo) -> dict[str, str]:
    return {s.step: s.status for s in info.steps}


@pytest.fixture
def diamond(tmp_path: Path, database_url: str) -> Iterator[Project]:
    with make_project(tmp_path / "proj", database_url, "diamond", toml=DIAMOND_TOML) as project:
        yield project


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[Project]:
    """The faulty steps on SQLite (the database is not the point), with raw/seed stored."""
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    with make_project(tmp_path / "proj", url, "faults") as project:
        project.datasets.write("raw/seed", pd.DataFrame({"x": [1, 2, 3]}))
        yield project


def test_diamond_runs_in_order_in_parallel_then_caches(diamond: Project) -> None:
    runner = runner_for(diamond)
    started = time.monotonic()
    first = runner.run(pipeline_of(diamond, "diamond"), params={"source": {"n": 5}})
    first_seconds = time.monotonic() - started
    assert first.status == "succeeded", first.error
    assert statuses(first) == dict.fromkeys(("source", "double", "total", "report"), "succeeded")
    steps = {s.step: s for s in first.steps}
    source, double, total, report = (steps[n] for n in ("source", "double", "total", "report"))
    assert all(s.started_at and s.finished_at and s.attempts == 1 for s in first.steps)
    assert source.finished_at <= double.started_at  # type: ignore[operator]
    assert source.finished_at <= total.started_at  # type: ignore[operator]
    assert max(double.finished_at, total.finished_at) <= report.started_at  # type: ignore[type-var,operator]
    # the two middle steps ran at the same time, in two processes
    assert double.started_at < total.finished_at  # type: ignore[operator]
    assert total.started_at < double.finished_at  # type: ignore[operator]

    # parameters: n from the call, factor from shipyard.toml, label from the default
    assert first.params == {
        "source": {"n": 5}, "double": {"factor": 3}, "total": {}, "report": {"label": "sum"}
    }  # fmt: skip
    frame = diamond.datasets.read("processed/report")
    assert frame["x"].tolist() == [0, 3, 6, 9, 12]
    assert frame["sum"].tolist() == [10] * 5
    assert report.inputs["processed/doubled"]["ref"] == "processed/doubled:1"
    assert report.inputs["artifacts/total"]["digest"] == total.outputs["artifacts/total"]["digest"]
    recorded = diamond.datasets.get("processed/report")
    assert (recorded.run_id, recorded.step) == (first.id, "report")

    # captured output: print, a subprocess writing to fd 1, and logging
    log_dir = Path(report.log_dir)
    assert log_dir == diamond.settings.state_dir / "runs" / first.id / "report"
    stdout = (log_dir / "stdout.log").read_text()
    assert "report of 5 rows" in stdout
    assert "from-a-subprocess" in stdout
    assert "INFO report: total is 10" in (log_dir / "stderr.log").read_text()

    # nothing changed: every step reused, no process started, no new dataset version
    started = time.monotonic()
    second = runner.run(pipeline_of(diamond, "diamond"), params={"source": {"n": 5}})
    assert statuses(second) == dict.fromkeys(("source", "double", "total", "report"), "cached")
    assert time.monotonic() - started < min(1.5, first_seconds / 2)
    assert {s.step: s.outputs for s in second.steps} == {s.step: s.outputs for s in first.steps}
    assert len(diamond.datasets.versions("processed/report")) == 1
    assert all(s.attempts == 0 and s.cache_key for s in second.steps)

    # a parameter changed: that step and what follows it run again, the rest is reused
    third = runner.run(
        pipeline_of(diamond, "diamond"), params={"source": {"n": 5}, "double": {"factor": 4}}
    )
    assert statuses(third) == {
        "source": "cached", "double": "succeeded", "total": "cached", "report": "succeeded"
    }  # fmt: skip
    assert diamond.datasets.read("processed/report")["x"].tolist() == [0, 4, 8, 12, 16]

    # a step's code changed: it and its downstream run again
    module = diamond.root / "pipelines" / "diamond.py"
    module.write_text(
        module.read_text().replace('int(numbers["x"].sum())', 'int(numbers["x"].sum()) + 1')
    )
    fourth = runner.run(
        pipeline_of(diamond, "diamond"), params={"source": {"n": 5}, "double": {"factor": 4}}
    )
    assert statuses(fourth) == {
        "source": "cached", "double": "cached", "total": "succeeded", "report": "succeeded"
    }  # fmt: skip
    assert diamond.datasets.read("processed/report")["sum"].tolist() == [11] * 5

    # use_cache=False forces every step; identical content reuses the dataset versions
    fifth = runner_for(diamond, workers=1).run(
        pipeline_of(diamond, "diamond"),
        steps=["source"],
        params={"source": {"n": 5}},
        use_cache=False,
    )
    assert statuses(fifth) == {"source": "succeeded"}
    assert fifth.step("source").outputs["raw/numbers"]["ref"] == "raw/numbers:1"

    listed = Runs(diamond.database).list(pipeline="diamond")
    assert [r.id for r in listed] == [fifth.id, fourth.id, third.id, second.id, first.id]
    assert Runs(diamond.database).get("latest").id == fifth.id


def test_steps_with_missing_inputs_are_refused_before_anything_runs(diamond: Project) -> None:
    runner = runner_for(diamond)
    with pytest.raises(NotFoundError) as caught:
        runner.run(pipeline_of(diamond, "diamond"), steps=["report"])
    message = str(caught.value)
    assert (
        "dataset processed/doubled does not exist yet: run the step that writes it (double) first"
        in message
    )
    assert "object artifacts/total does not exist yet" in message
    assert Runs(diamond.database).list() == []


def test_unknown_steps_and_params_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    bad_toml = DIAMOND_TOML + "\n[pipelines.diamond.params.report]\ncolour = 'red'\n"
    with make_project(tmp_path / "proj", url, "diamond", toml=bad_toml) as project:
        runner = runner_for(project)
        pipeline = pipeline_of(project, "diamond")
        with pytest.raises(ConfigError, match=r"report.colour: step 'report' has no .*takes label"):
            runner.run(pipeline)
        project.settings.pipelines["diamond"]["params"].pop("report")
        with pytest.raises(ConfigError, match=r"unknown step\(s\) 'nope'"):
            runner.run(pipeline, params={"nope": {"x": 1}})
        with pytest.raises(ConfigError, match="parameters must be JSON values"):
            runner.run(pipeline, params={"source": {"n": object()}})
        with pytest.raises(NotFoundError, match="has no step 'nope'"):
            runner.run(pipeline, steps=["nope"])
        assert Runs(project.database).list() == []


def test_a_flaky_step_is_retried_until_it_succeeds(faults: Project, tmp_path: Path) -> None:
    counter = tmp_path / "attempts.txt"
    info = runner_for(faults).run(
        pipeline_of(faults, "faults"), steps=["flaky"], params={"flaky": {"counter": str(counter)}}
    )
    assert info.status == "succeeded", info.error
    assert info.step("flaky").attempts == 3
    assert counter.read_text().count("attempt") == 3
    stderr = (Path(info.step("flaky").log_dir) / "stderr.log").read_text()
    assert "RuntimeError: flaky failure 1" in stderr
    assert "RuntimeError: flaky failure 2" in stderr
    assert faults.datasets.get("processed/flaky").version == 1


def test_a_failing_step_skips_downstream_and_records_nothing(faults: Project) -> None:
    info = runner_for(faults).run(pipeline_of(faults, "faults"), steps=["broken", "after_broken"])
    assert info.status == "failed"
    assert info.error == (
        "step 'broken' failed after 1 attempt: ValueError: column 'x' has negative values"
    )
    assert statuses(info) == {"broken": "failed", "after_broken": "skipped"}
    assert "upstream step 'broken'" in info.step("after_broken").error
    assert not faults.datasets.exists("processed/broken")
    broken = info.step("broken")
    assert broken.outputs == {}
    assert "stdout before failing" in (Path(broken.log_dir) / "stdout.log").read_text()
    tail = "\n".join(broken.log_tail("stderr"))
    assert "details on stderr" in tail
    assert "Traceback" in tail
    assert "ValueError: column 'x' has negative values" in tail


def test_a_step_over_its_timeout_is_killed(faults: Project) -> None:
    started = time.monotonic()
    info = runner_for(faults).run(pipeline_of(faults, "faults"), steps=["slow"])
    assert time.monotonic() - started < 15
    assert info.status == "failed"
    assert info.step("slow").error == "timed out after 1.5 s"
    assert not faults.datasets.exists("processed/slow")


def test_a_step_killed_after_staging_part_of_its_outputs_records_none(faults: Project) -> None:
    info = runner_for(faults).run(pipeline_of(faults, "faults"), steps=["bomb"])
    assert info.status == "failed"
    assert "killed by SIGKILL" in info.step("bomb").error
    assert not faults.datasets.exists("processed/half")


def test_full_run_needs_inputs_no_step_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    with make_project(tmp_path / "proj", url, "faults") as project:
        with pytest.raises(NotFoundError, match="dataset raw/seed does not exist yet and no step"):
            runner_for(project).run(pipeline_of(project, "faults"))
        assert Runs(project.database).list() == []


SIGTERM_SCRIPT = """
import sys
from pathlib import Path
from shipyard import Project
from shipyard.pipelines import load_module_pipeline
from shipyard.pipelines.runner import Runner

if __name__ == "__main__":
    project = Project(sys.argv[1])
    runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
    pipeline = load_module_pipeline(project.root / "pipelines" / "faults.py")
    runner.run(pipeline, steps=["sleepy"], params={"sleepy": {"marker": sys.argv[2]}})
"""


def test_sigterm_kills_children_and_marks_the_run_killed(faults: Project, tmp_path: Path) -> None:
    script = tmp_path / "run_it.py"
    script.write_text(SIGTERM_SCRIPT)
    marker = tmp_path / "child.pid"
    env = {**os.environ, "SHIPYARD_DATABASE_URL": faults.settings.database_url}
    parent = subprocess.Popen([sys.executable, str(script), str(faults.root), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child_pid = int(marker.read_text())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        parent.kill()
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    [info] = Runs(faults.database).list()
    assert info.status == "killed"
    assert "SIGTERM" in info.error
    assert statuses(Runs(faults.database).get(info.id)) == {"sleepy": "killed"}
    assert not faults.datasets.exists("processed/sleepy")
