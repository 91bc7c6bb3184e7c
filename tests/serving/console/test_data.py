"""The datasets and predictions pages: zones, versions (paged), schema and head rows; batch
jobs and the prediction log (paged); what a non-admin session sees of paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from shipyard import Project
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.datasets.predictions import PredictionStore

from .conftest import console_client, login, make_token

pytestmark = pytest.mark.anyio


def job_of(root: Path) -> str:
    """The demo's batch job id."""
    with Project(root) as project:
        jobs, _total = PredictionStore(project.database, project.datasets).jobs_page()
    return jobs[0].id


async def test_the_datasets_page_lists_each_zone(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        every = await client.get("/ui/datasets")
        raw = await client.get("/ui/datasets?zone=raw")
        bad = await client.get("/ui/datasets?zone=gold")
    assert every.status_code == 200
    listed = re.findall(r'data-dataset="([^"]+)"', every.text)
    assert listed[0] == "raw/customers"
    assert "predictions/churn" in listed
    assert "processed/train_train" in listed
    assert re.findall(r'data-dataset="([^"]+)"', raw.text) == ["raw/customers"]
    assert bad.status_code == 400
    assert "is not a zone" in bad.text


async def test_a_dataset_and_one_of_its_versions(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        versions = await client.get("/ui/datasets/raw/customers")
        version = await client.get("/ui/datasets/raw/customers/1")
    assert versions.status_code == 200
    assert re.findall(r'data-version="(\d+)"', versions.text) == ["1"]
    html = version.text
    assert version.status_code == 200
    assert '<dd id="row-count">2,000</dd>' in html
    assert '<tr data-column="customer_id"><td>customer_id</td>' in html
    assert 'id="head-rows" data-rows="20"' in html
    assert 'run <a href="/ui/runs/' in html
    assert "step <a" in html


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/datasets/raw/nothing", 404),
        ("/ui/datasets/raw/customers/7", 404),
        ("/ui/datasets/gold/customers", 400),
        ("/ui/datasets/raw/customers/abc", 400),
        ("/ui/datasets/raw/customers/0", 400),
        ("/ui/datasets/raw/customers?limit=abc", 400),
        ("/ui/datasets/raw/-x", 400),
        ("/ui/predictions/jobs/nope", 404),
        ("/ui/predictions?before=x", 400),
        ("/ui/predictions?offset=-3", 400),
        ("/ui/predictions?model=a%20b", 400),
    ],
)
async def test_unknown_or_bad_is_a_clear_page(demo_template: Path, path: str, status: int) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get(path)
    assert answer.status_code == status, answer.text[-800:]
    assert 'class="error"' in answer.text
    assert "Traceback" not in answer.text


async def test_versions_page_by_page(demo: Path) -> None:
    with Project(demo) as project:
        for number in range(12):
            project.datasets.write("raw/tiny", pd.DataFrame({"n": [number, number + 1]}))
    async with console_client(demo) as client:
        first = await client.get("/ui/datasets/raw/tiny?limit=5")
        third = await client.get("/ui/datasets/raw/tiny?limit=5&offset=10")
        newest = await client.get("/ui/datasets/raw/tiny/12")
    assert re.findall(r'data-version="(\d+)"', first.text) == ["12", "11", "10", "9", "8"]
    assert 'href="/ui/datasets/raw/tiny?limit=5&amp;offset=5" rel="next"' in first.text
    assert re.findall(r'data-version="(\d+)"', third.text) == ["2", "1"]
    assert 'rel="next"' not in third.text
    assert re.findall(r"<tr><td>(\d+)</td></tr>", newest.text) == ["11", "12"]


async def test_predictions_show_the_batch_job_and_the_log(demo_template: Path) -> None:
    job_id = job_of(demo_template)
    async with console_client(demo_template) as client:
        listing = await client.get("/ui/predictions")
        job = await client.get(f"/ui/predictions/jobs/{job_id}")
        other = await client.get("/ui/predictions?model=other")
    assert listing.status_code == 200
    assert re.findall(r'data-job="([^"]+)" data-status="succeeded"', listing.text) == [job_id]
    assert len(re.findall(r'<tr class="logged" data-id=', listing.text)) >= 1
    assert job.status_code == 200
    assert 'id="job-progress" data-status="succeeded"' in job.text
    assert "2,000 rows scored" in job.text
    assert 'href="/ui/datasets/predictions/churn/1"' in job.text
    assert 'id="head-rows" data-rows="20"' in job.text
    assert "data-job=" not in other.text.split('id="jobs-table"')[1].split("</section>")[0]


async def test_the_prediction_log_pages_from_the_newest(demo: Path) -> None:
    rows = [
        ("churn", 1, f"req-{n:03d}", datetime(2030, 1, 1, tzinfo=UTC), 1.5, '[{"a": 1}]',
         '{"predictions": [1]}', False)
        for n in range(120)
    ]  # fmt: skip
    with Project(demo) as project:
        PredictionLogStore(project.database).append(rows)
    async with console_client(demo) as client:
        first = await client.get("/ui/predictions")
        older = re.search(r'href="(/ui/predictions\?before=\d+)" rel="next"', first.text)
        assert older is not None
        second = await client.get(older.group(1).replace("&amp;", "&"))
        fragment = await client.get(
            older.group(1), headers={"HX-Request": "true", "HX-Target": "log-table"}
        )
    ids = [int(i) for i in re.findall(r'<tr class="logged" data-id="(\d+)"', first.text)]
    assert len(ids) == 50
    assert ids == sorted(ids, reverse=True)
    more = [int(i) for i in re.findall(r'<tr class="logged" data-id="(\d+)"', second.text)]
    assert len(more) == 50
    assert max(more) < min(ids)
    assert fragment.text.lstrip().startswith('<section id="log-table"')
    assert "<html" not in fragment.text


async def test_paths_sql_and_logins_only_for_admins(demo_template: Path) -> None:
    job_id = job_of(demo_template)
    reader, admin = (
        make_token(demo_template, "r2", "read"),
        make_token(demo_template, "a2", "admin"),
    )
    root = str(demo_template)
    pages = ["/ui/predictions", f"/ui/predictions/jobs/{job_id}", "/ui/datasets",
             "/ui/datasets/predictions/churn", "/ui/datasets/predictions/churn/1"]  # fmt: skip
    async with console_client(demo_template, auth=True) as client:
        await login(client, reader)
        as_reader = [await client.get(path) for path in pages]
    async with console_client(demo_template, auth=True) as client:
        await login(client, admin)
        as_admin = [await client.get(path) for path in pages]
    for answer in as_reader:
        assert answer.status_code == 200
        assert root not in answer.text, answer.url
        assert "console-test" not in answer.text
        assert "<dt>By</dt>" not in answer.text
    assert "csv:customers.csv" in as_reader[0].text
    assert f"csv:{root}/data/customers.csv" in as_admin[1].text
    assert "<dt>Work folder</dt>" in as_admin[1].text
