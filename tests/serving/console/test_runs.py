"""The runs pages: the list (filters, paging), a run's graph, timeline, data and logs; who
sees paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard import Project
from shipyard.datasets.run_records import Runs, StepRunInfo
from shipyard.serving.console.runs import read_log, step_graph

from .conftest import console_client, login, make_token

pytestmark = pytest.mark.anyio


def run_ids(html: str) -> list[str]:
    """The runs listed on a page, in order."""
    return re.findall(r'<tr class="run" data-run="([^"]+)"', html)


def newest_run(root: Path) -> str:
    """The id of the demo's first training run (its steps all ran)."""
    with Project(root) as project:
        runs, _total = Runs(project.database).page(limit=100)
    return runs[-1].id


async def test_the_list_shows_the_demo_runs_with_their_filters(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/runs")
        train = await client.get("/ui/runs", params={"pipeline": "train", "status": "succeeded"})
        other = await client.get("/ui/runs", params={"pipeline": "nightly"})
        failed = await client.get("/ui/runs", params={"status": "failed"})
    assert answer.status_code == 200
    assert len(run_ids(answer.text)) == 3
    assert '<option value="train"' in answer.text
    assert "3 ran" not in answer.text or "cached" in answer.text
    assert len(run_ids(train.text)) == 3
    assert run_ids(other.text) == []
    assert "matches these filters" in other.text
    assert run_ids(failed.text) == []


@pytest.mark.parametrize(
    "query",
    ["status=sleeping", "limit=0", "limit=100000", "offset=-1", "offset=abc", "limit=1.5"],
)
async def test_bad_filters_and_paging_are_400_pages(demo_template: Path, query: str) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get(f"/ui/runs?{query}")
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert 'class="error"' in answer.text
    assert "Traceback" not in answer.text


async def test_a_run_shows_its_graph_timeline_data_and_log_tails(demo_template: Path) -> None:
    run_id = newest_run(demo_template)
    async with console_client(demo_template) as client:
        answer = await client.get(f"/ui/runs/{run_id}")
    assert answer.status_code == 200
    html = answer.text
    steps = ["extract", "validate", "treat", "train", "evaluate", "register", "gate"]
    assert re.findall(r'<g class="node step-\w+" data-step="(\w+)"', html) == steps
    assert 'data-from="extract" data-to="validate"' in html
    assert 'data-from="validate" data-to="treat"' in html
    assert 'data-from="extract" data-to="treat"' not in html  # implied by extract → validate
    assert "after extract, validate" in html  # the list keeps every input
    bars = re.findall(r'class="timeline-bar step-(\w+)" style="margin-left: ([\d.]+)%; width', html)
    assert [outcome for outcome, _ in bars] == ["ran"] * 7
    lefts = [float(left) for _, left in bars]
    assert lefts == sorted(lefts)
    assert lefts[0] == pytest.approx(0, abs=1)
    assert '<a href="/ui/datasets/raw/customers/1">raw/customers:1</a>' in html
    assert f'href="/ui/runs/{run_id}/steps/extract/log?stream=stderr"' in html
    assert "--- train.extract attempt 1" in html  # the log's tail


async def test_a_step_log_page(demo_template: Path) -> None:
    run_id = newest_run(demo_template)
    async with console_client(demo_template) as client:
        stderr = await client.get(f"/ui/runs/{run_id}/steps/extract/log")
        stdout = await client.get(f"/ui/runs/{run_id}/steps/train/log?stream=stdout")
        bad = await client.get(f"/ui/runs/{run_id}/steps/extract/log?stream=etc")
        no_step = await client.get(f"/ui/runs/{run_id}/steps/nope/log")
        no_run = await client.get("/ui/runs/20000101T000000-000000/steps/extract/log")
    assert stderr.status_code == 200
    assert '<pre id="log"' in stderr.text
    assert "--- train.extract attempt 1" in stderr.text
    assert stdout.status_code == 200
    assert 'aria-current="page">stdout' in stdout.text
    assert bad.status_code == 400
    assert no_step.status_code == 404
    assert "has no step" in no_step.text
    assert no_run.status_code == 404


async def test_an_unknown_run_is_a_404_page(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/runs/20000101T000000-000000")
        long = await client.get("/ui/runs/" + "x" * 100)
    assert answer.status_code == 404
    assert "no run" in answer.text
    assert long.status_code == 400


async def test_120_runs_page_by_page(demo: Path) -> None:
    with Project(demo) as project:
        runs = Runs(project.database)
        for number in range(120):
            run_id = f"20300101T{number:06d}-bulk{number:03d}"
            runs.create(
                run_id=run_id,
                pipeline="bulk",
                steps=["a", "b"],
                params={},
                trigger="schedule",
                actor="test",
                log_root=demo / "logs" / run_id,
            )
            runs.finish(run_id, "failed" if number % 10 == 0 else "succeeded", "boom")
    async with console_client(demo) as client:
        first = await client.get("/ui/runs?pipeline=bulk")
        second = await client.get("/ui/runs?pipeline=bulk&offset=50")
        last = await client.get("/ui/runs?pipeline=bulk&offset=100")
        failed = await client.get("/ui/runs?pipeline=bulk&status=failed&limit=5")
        everything = await client.get("/ui/runs?limit=500")
        fragment = await client.get(
            "/ui/runs?pipeline=bulk&offset=50",
            headers={"HX-Request": "true", "HX-Target": "runs-table"},
        )
    assert len(run_ids(first.text)) == 50
    assert 'data-total="120"' in first.text
    assert 'href="/ui/runs?pipeline=bulk&amp;offset=50" rel="next"' in first.text
    page_two = run_ids(second.text)
    assert len(page_two) == 50
    assert not set(page_two) & set(run_ids(first.text))
    assert 'href="/ui/runs?pipeline=bulk&amp;offset=100" rel="next"' in second.text
    assert 'href="/ui/runs?pipeline=bulk" rel="prev"' in second.text
    assert len(run_ids(last.text)) == 20
    assert 'rel="next"' not in last.text
    assert run_ids(failed.text) == [f"20300101T{n:06d}-bulk{n:03d}" for n in (110, 100, 90, 80, 70)]
    assert 'href="/ui/runs?pipeline=bulk&amp;status=failed&amp;limit=5&amp;offset=5"' in failed.text
    assert len(run_ids(everything.text)) == 123
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="runs-table"')
    assert "<html" not in fragment.text
    assert run_ids(fragment.text) == page_two


async def test_paths_and_logins_only_for_admins(demo_template: Path) -> None:
    run_id = newest_run(demo_template)
    reader, admin = make_token(demo_template, "r", "read"), make_token(demo_template, "a", "admin")
    root = str(demo_template)
    async with console_client(demo_template, auth=True) as client:
        anonymous = await client.get(f"/ui/runs/{run_id}")
        await login(client, reader)
        as_reader = await client.get(f"/ui/runs/{run_id}")
        log_reader = await client.get(f"/ui/runs/{run_id}/steps/extract/log")
    async with console_client(demo_template, auth=True) as client:
        await login(client, admin)
        as_admin = await client.get(f"/ui/runs/{run_id}")
        log_admin = await client.get(f"/ui/runs/{run_id}/steps/extract/log")
    assert anonymous.status_code == 303
    assert "/ui/login" in anonymous.headers["location"]
    assert as_reader.status_code == 200
    leaks = [as_reader.text[max(0, i - 80) : i + 40] for i in _finds(as_reader.text, root)]
    assert leaks == []
    assert "&#34;project_root&#34;: &#34;…/demo&#34;" in as_reader.text
    assert "<dt>Host</dt>" not in as_reader.text
    assert root not in log_reader.text
    assert root in as_admin.text
    assert "<dt>Host</dt>" in as_admin.text
    assert f"{root}/.shipyard/runs/{run_id}/extract/stderr.log" in log_admin.text


def _finds(text: str, part: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(part), text)]


def _step(
    name: str, inputs: list[str], outputs: list[str], status: str = "succeeded"
) -> StepRunInfo:
    return StepRunInfo(
        step=name, status=status, cache_key=None, attempts=1, started_at=None, finished_at=None,
        inputs={k: {"kind": "dataset", "ref": f"{k}:1"} for k in inputs},
        outputs={k: {"kind": "dataset", "ref": f"{k}:1"} for k in outputs},
        error="", log_dir="",
    )  # fmt: skip


def test_the_graph_lays_out_branches_in_levels() -> None:
    steps = [
        _step("load", [], ["raw/a"]),
        _step("left", ["raw/a"], ["processed/l"]),
        _step("right", ["raw/a"], ["processed/r"]),
        _step("join", ["processed/l", "processed/r"], ["processed/j"]),
        _step("after", [], [], status="skipped"),
    ]
    graph = step_graph(steps)
    where = {n["name"]: (n["x"], n["y"]) for n in graph["nodes"]}
    assert where["left"][0] == where["right"][0] > where["load"][0]
    assert where["left"][1] != where["right"][1]
    assert where["join"][0] > where["left"][0]
    assert where["after"][0] > where["join"][0]  # skipped: placed after the step before it
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("load", "left"),
        ("load", "right"),
        ("left", "join"),
        ("right", "join"),
        ("join", "after"),
    }


def test_a_long_log_is_read_from_its_end_only(tmp_path: Path) -> None:
    (tmp_path / "stderr.log").write_text("".join(f"line {n}\n" for n in range(100_000)))
    step = _step("big", [], [])
    step = StepRunInfo(**{**step.__dict__, "log_dir": str(tmp_path)})
    log = read_log(step, "stderr", 1000)
    assert log.found
    assert log.cut
    assert log.size > 500_000
    assert len(log.text) <= 1000
    assert log.text.startswith("line ")
    assert log.text.endswith("line 99999\n")
    assert not read_log(step, "stdout", 1000).found
