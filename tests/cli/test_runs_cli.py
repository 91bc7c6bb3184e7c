"""``shipyard run`` and ``shipyard runs list/show`` on a project folder, as a user types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shipyard.cli.context import Group, ProjectOption
from shipyard.cli.runs import run_command, runs_app

TINY = Path(__file__).parents[1] / "pipelines" / "pipelines_for_tests" / "tiny.py"

app = typer.Typer(cls=Group, pretty_exceptions_enable=False, add_completion=False)
app.command("run")(run_command)
app.add_typer(runs_app, name="runs")


@app.callback()
def _root(ctx: typer.Context, project: ProjectOption = None) -> None:
    ctx.obj = {"project": project}


def shipyard(project: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI on ``project``; return exit code, stdout and stderr."""
    result = CliRunner().invoke(app, ["--project", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project on its embedded SQLite, with pipelines/tiny.py and a setting for it."""
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    (root / "pipelines").mkdir(parents=True)
    (root / "shipyard.toml").write_text(
        '[project]\nname = "cli"\n\n[pipelines.tiny.params.make]\nn = 4\n'
    )
    shutil.copy(TINY, root / "pipelines" / "tiny.py")
    return root


def test_run_then_cached_then_failed_and_shown(folder: Path) -> None:
    code, out, err = shipyard(folder, "run", "tiny")
    assert code == 0, err
    assert "2 ran, 0 cached, 0 failed" in out

    code, out, err = shipyard(folder, "run", "tiny")
    assert code == 0, err
    assert "0 ran, 2 cached, 0 failed" in out
    assert "reused from cache: make, check" in out

    code, out, err = shipyard(folder, "run", "tiny", "--param", "check.limit=2")
    assert code == 1
    assert err.startswith(
        "error: step 'check' failed after 1 attempt: ValueError: too many rows: 4 > 2\n"
    )
    assert "logs of check:" in err
    assert "Traceback" not in out

    code, out, _ = shipyard(folder, "runs", "list", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded"]
    assert runs[0]["counts"] == {
        "succeeded": 0, "cached": 1, "failed": 1, "skipped": 0, "killed": 0
    }  # fmt: skip
    assert runs[0]["params"] == {"make": {"n": 4}, "check": {"limit": 2}}

    code, out, _ = shipyard(folder, "runs", "show", runs[0]["id"])
    assert code == 0
    assert "status=failed" in out
    assert f"{folder}/.shipyard/runs/{runs[0]['id']}/check" in out.replace("\n", "")
    assert "ValueError: too many rows: 4 > 2" in out
    assert "| 4 rows exceed the limit" in out  # the tail of the step's stderr

    code, out, _ = shipyard(folder, "runs", "show", runs[1]["id"], "--json")
    shown = json.loads(out)
    assert [s["status"] for s in shown["steps"]] == ["cached", "cached"]

    code, out, _ = shipyard(folder, "runs", "list")
    assert code == 0
    assert runs[0]["id"] in out


def test_run_options_and_errors(folder: Path) -> None:
    code, out, err = shipyard(
        folder, "run", "tiny", "--step", "make", "--param", "make.n=2", "--no-cache", "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    assert [s["step"] for s in info["steps"]] == ["make"]
    assert info["steps"][0]["outputs"]["raw/items"]["ref"] == "raw/items:1"

    code, _, err = shipyard(folder, "run", "nope")
    assert code == 1
    assert "error: no pipeline 'nope'" in err
    assert "pipelines here: tiny" in err

    code, _, err = shipyard(folder, "run", "tiny", "--param", "oops")
    assert code == 1
    assert "--param expects STEP.KEY=VALUE" in err

    code, _, err = shipyard(folder, "runs", "show", "20000101T000000-000000")
    assert code == 1
    assert "no run '20000101T000000-000000'" in err


def test_step_without_its_inputs_is_refused(folder: Path) -> None:
    code, _, err = shipyard(folder, "run", "tiny", "--step", "check")
    assert code == 1
    assert "dataset raw/items does not exist yet: run the step that writes it (make) first" in err
    code, out, _ = shipyard(folder, "runs", "list", "--json")
    assert json.loads(out) == []


def test_run_without_a_name_runs_the_only_pipeline(folder: Path) -> None:
    code, out, err = shipyard(folder, "run", "--json")
    assert code == 0, err
    assert json.loads(out)["pipeline"] == "tiny"


def test_run_without_a_name_among_several_pipelines(folder: Path) -> None:
    shutil.copy(TINY, folder / "pipelines" / "other.py")
    code, out, err = shipyard(folder, "run")
    assert code == 1
    assert err == (
        "error: this project has 2 pipelines (other, tiny): name one (shipyard run other), "
        'or set the default in shipyard.toml: [pipelines] default = "other"\n'
    )
    assert out == ""

    config = folder / "shipyard.toml"
    config.write_text(
        config.read_text().replace(
            "[pipelines.tiny", '[pipelines]\ndefault = "tiny"\n\n[pipelines.tiny', 1
        )
    )
    code, out, err = shipyard(folder, "run", "--json")
    assert code == 0, err
    assert json.loads(out)["pipeline"] == "tiny"
    code, out, err = shipyard(folder, "run", "other", "--json")  # a name still wins
    assert code == 0, err
    assert json.loads(out)["pipeline"] == "other"

    config.write_text(config.read_text().replace('default = "tiny"', 'default = "nope"'))
    code, _, err = shipyard(folder, "run")
    assert code == 1
    assert err.startswith("error: [pipelines] default = 'nope' in ")
    assert "names no pipeline; pipelines here: other, tiny." in err
    assert err.count("\n") == 1


def test_run_without_a_name_and_no_pipelines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "empty"\n')
    code, _, err = shipyard(tmp_path, "run")
    assert code == 1
    assert err.startswith(f"error: no pipelines in {tmp_path.resolve()}: write pipelines/NAME.py")
