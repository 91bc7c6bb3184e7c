"""The exposure API: predictions and dataset rows over HTTP, in every format, paged and streamed."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline
from starlette.requests import Request
from tests.helpers import make_frame
from tests.serving.conftest import serving
from tests.serving.test_wire import LiveServer

from shipyard import Project
from shipyard.datasets.predictions import ROW_COLUMNS, RowFilter
from shipyard.registry.tokens import ActiveToken, TokenStore
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.base import Prediction
from shipyard.serving.data.exposure import batches_after
from shipyard.serving.data.redact import location, message, public
from shipyard.serving.predlog import PredictionLog

pytestmark = pytest.mark.anyio
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
FORMATS = ("csv", "parquet", "arrow")
ACCEPT = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
#: The prediction columns' types, to read a CSV page back without guessing
PREDICTION_CSV_TYPES = {
    "source": pa.string(), "model": pa.string(), "batch_id": pa.string(),
    "request_id": pa.string(), "key": pa.string(), "probabilities": pa.string(),
}  # fmt: skip


def customers(rows: int, seed: int) -> pd.DataFrame:
    frame, _ = make_frame(rows, seed)
    frame.insert(0, "customer_id", [f"c{seed}-{i:04d}" for i in range(rows)])
    frame["joined"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(rows), unit="h"
    )
    frame["active"] = frame["tenure"] % 2 == 0
    return frame


@pytest.fixture(scope="module")
def exposed(served_project: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """``served_project`` with two batch jobs, logged requests and datasets in two zones.

    - ``predictions/churn`` v1 (churn:1, key customer_id, 200 rows in 4 parts) and v2
      (churn:2, row_id, 90 rows in 2 parts);
    - ``raw/customers`` (one Parquet file, with NaN) and ``processed/customers`` (3 parts of
      several row groups each);
    - 3 logged requests of churn:1 with 2 rows each.
    """
    project = served_project
    root = tmp_path_factory.mktemp("exposure")
    keyed, plain = root / "keyed.parquet", root / "plain.parquet"
    customers(200, 1).to_parquet(keyed)
    customers(90, 2).drop(columns="customer_id").to_parquet(plain)
    project.predict("churn:1", str(keyed), keys=("customer_id",), chunk_rows=64)
    project.predict("churn:2", str(plain), chunk_rows=64)
    project.datasets.write("raw/customers", customers(120, 3))
    parts = root / "parts"
    parts.mkdir()
    frame = customers(100, 4)
    for number, start in enumerate((0, 40, 70)):
        rows = frame.iloc[start : start + (40, 30, 30)[number]]
        table = pa.Table.from_pandas(rows, preserve_index=False)
        pq.write_table(table, parts / f"part-{number}.parquet", row_group_size=16)
    staged = project.datasets.stage_parts("processed/customers", parts)
    project.datasets.commit([staged])
    log = PredictionLog(project.database)
    answer = Prediction(np.array([1, 0]), np.array([[0.25, 0.75], [0.5, 0.5]]), [0, 1])
    for number in range(3):
        log.record("churn", 1, f"req-{number}", 0.002, {"x": np.array([1, 2])}, answer)
    log.flush()
    return project


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so one app (and its loaded model) serves every test here."""
    return "asyncio"


@pytest.fixture(scope="module")
async def client(exposed: Project) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app serving churn:1 over the exposed project (reads change nothing)."""
    async with serving(create_app(exposed.registry, ["churn:1"])) as http:
        yield http


def parse(fmt: str, content: bytes, csv_types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """A CSV, Parquet or Arrow IPC stream body as an Arrow table."""
    if fmt == "csv":
        options = pa_csv.ConvertOptions(
            column_types=csv_types or {},
            strings_can_be_null=True,  # an empty cell is a null, a quoted "" an empty string
            quoted_strings_can_be_null=False,
        )
        return pa_csv.read_csv(io.BytesIO(content), convert_options=options)
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content))
    return pa_ipc.open_stream(content).read_all()


async def follow(client: httpx.AsyncClient, url: str) -> list[httpx.Response]:
    """Every page from ``url`` on, following the ``Link: rel="next"`` headers."""
    answers = []
    next_url: str | None = url
    while next_url is not None:
        answer = await client.get(next_url)
        assert answer.status_code == 200, answer.text
        answers.append(answer)
        link = answer.headers.get("link")
        cursor = answer.headers.get("x-next-cursor")
        assert (link is None) == (cursor is None)
        if link is not None:
            assert link.endswith('>; rel="next"')
            assert f"cursor={cursor}" in link
        next_url = link[1 : link.index(">")] if link else None
    return answers


def as_json(rows: Any) -> Any:
    """``rows`` as JSON gives them back: times as ISO-8601 text, NaN as null."""
    return orjson.loads(orjson.dumps(rows))


def expected_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame from ``Datasets.read`` as the JSON rows of the API."""
    records = []
    for row in frame.to_dict(orient="records"):
        records.append(
            {
                name: (
                    None
                    if isinstance(value, float) and np.isnan(value)
                    else value.isoformat()
                    if isinstance(value, pd.Timestamp)
                    else value.item()
                    if isinstance(value, np.generic)
                    else value
                )
                for name, value in row.items()
            }
        )
    return records


# -- predictions ----------------------------------------------------------------------------


async def test_prediction_pages_in_json_give_every_row_once(
    client: httpx.AsyncClient, exposed: Project
) -> None:
    everything = as_json(exposed.predictions.rows(RowFilter(), limit=100_000)[0])
    assert len(everything) == 200 + 90 + 6
    answers = await follow(client, "/v1/predictions?limit=37")
    assert len(answers) == 8
    rows = []
    for answer in answers:
        body = answer.json()
        assert set(body) == {"predictions", "count", "next_cursor"}
        assert body["count"] == len(body["predictions"])
        assert body["next_cursor"] == answer.headers.get("x-next-cursor")
        rows.extend(body["predictions"])
    assert rows == everything
    # the rows hold what was scored: compare with the stored prediction dataset
    stored = exposed.datasets.read("predictions/churn:1")
    first = rows[0]
    assert list(first) == list(ROW_COLUMNS)
    assert first["key"] == stored["customer_id"][0]
    assert first["prediction"] == stored["prediction"][0]
    assert first["probabilities"] == [stored["proba_0"][0], stored["proba_1"][0]]
    assert datetime.fromisoformat(first["scored_at"]) == stored["scored_at"][0]
    assert first["scored_at"].endswith("+00:00")
    assert rows[-1]["source"] == "online"
    assert rows[-1]["request_id"] == "req-2"
    # the default page is 1,000 rows: all of them here, and no cursor
    whole = await client.get("/v1/predictions")
    assert whole.json()["count"] == len(everything)
    assert whole.json()["next_cursor"] is None
    assert "link" not in whole.headers


@pytest.mark.parametrize("fmt", FORMATS)
async def test_prediction_pages_in_every_format(
    client: httpx.AsyncClient, exposed: Project, fmt: str
) -> None:
    stored = exposed.datasets.read("predictions/churn:1")
    url = "/v1/predictions?model=churn&version=1&source=batch&limit=150"
    by_param = await follow(client, f"{url}&format={fmt}")
    accepted = await client.get(url, headers={"accept": f"application/json;q=0.5, {ACCEPT[fmt]}"})
    assert accepted.headers["content-type"].startswith(ACCEPT[fmt])
    assert accepted.content == by_param[0].content
    assert len(by_param) == 2
    tables = [parse(fmt, a.content, PREDICTION_CSV_TYPES) for a in by_param]
    assert [t.num_rows for t in tables] == [150, 50]
    table = pa.concat_tables(tables)
    assert table.column_names == list(ROW_COLUMNS)
    assert table["key"].to_pylist() == stored["customer_id"].tolist()
    assert table["prediction"].to_pylist() == stored["prediction"].tolist()
    assert set(table["source"].to_pylist()) == {"batch"}
    assert table["request_id"].null_count == 200
    probabilities = table["probabilities"].to_pylist()
    if fmt == "csv":
        probabilities = [json.loads(text) for text in probabilities]
    else:
        assert table.schema.field("probabilities").type == pa.list_(pa.float64())
        assert table.schema.field("scored_at").type == pa.timestamp("us", "UTC")
    assert probabilities == stored[["proba_0", "proba_1"]].values.tolist()
    scored = pd.Series(table["scored_at"].to_pylist())
    assert (pd.to_datetime(scored, utc=True) == stored["scored_at"]).all()
    # format= wins over the Accept header
    both = await client.get(f"{url}&format=json", headers={"accept": ACCEPT[fmt]})
    assert both.headers["content-type"] == "application/json"


async def test_prediction_filters(client: httpx.AsyncClient, exposed: Project) -> None:
    async def keys(query: str) -> list[str]:
        answer = await client.get(f"/v1/predictions?{query}")
        assert answer.status_code == 200, answer.text
        return [row["key"] for row in answer.json()["predictions"]]

    stored = exposed.datasets.read("predictions/churn:1")
    plain = [str(n) for n in range(90)]
    online = [f"req-{n}" for n in range(3) for _ in range(2)]
    assert await keys("version=2") == plain
    assert await keys("model=churn&version=1&source=batch") == stored["customer_id"].tolist()
    assert await keys("source=online") == online
    assert await keys("model=other") == []
    assert await keys("key=c1-0042") == ["c1-0042"]
    assert await keys("key=7&version=2") == ["7"]
    assert await keys("key=req-1") == ["req-1", "req-1"]
    # times: a date, a datetime with Z or an offset (escaped or not), naive = UTC
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).date().isoformat()
    assert len(await keys(f"until={tomorrow}")) == 296
    assert await keys(f"since={tomorrow}") == []
    assert await keys(f"until={(now - timedelta(days=1)).date().isoformat()}") == []
    today = now.date().isoformat()
    assert len(await keys(f"since={today}&until={today}")) == 296  # the whole day
    hour_ago = now - timedelta(hours=1)
    in_cairo = hour_ago.astimezone(timezone(timedelta(hours=2))).isoformat()
    for text in (
        hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ"),
        quote(in_cairo),
        in_cairo,  # an unescaped '+' arrives as a space
        hour_ago.replace(tzinfo=None).isoformat(),  # naive: UTC
    ):
        assert len(await keys(f"since={text}")) == 296, text
        assert await keys(f"until={text}") == [], text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=100001", "limit must be between 1 and 100000"),
        ("limit=0", "limit must be between 1 and 100000"),
        ("limit=many", "limit must be a whole number"),
        ("since=yesterday", "since must be an ISO-8601 date or datetime, e.g. since=2024-05-01"),
        ("until=2024-13-01", "until must be an ISO-8601 date or datetime"),
        ("since=2024-05-02&until=2024-05-01", "is after until"),
        ("version=latest", "version must be a whole number"),
        ("source=both", "source must be one of batch, online"),
        ("cursor=garbage", "not one this server gave out"),
        ("format=xml", "format must be one of json, csv, parquet, arrow but got 'xml'"),
    ],
)
async def test_bad_prediction_parameters_are_400(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    answer = await client.get(f"/v1/predictions?{query}")
    assert answer.status_code == 400
    body = answer.json()
    assert message in body["error"]
    assert body["type"] == "InvalidArgumentError"
    assert body["request_id"] == answer.headers["x-request-id"]


async def test_a_cursor_only_goes_with_its_filters(client: httpx.AsyncClient) -> None:
    first = await client.get("/v1/predictions?model=churn&limit=5")
    cursor = first.json()["next_cursor"]
    other = await client.get(f"/v1/predictions?model=churn&version=2&cursor={cursor}")
    assert other.status_code == 400
    assert "other filters" in other.json()["error"]


async def test_batch_jobs(client: httpx.AsyncClient, exposed: Project) -> None:
    answer = await client.get("/v1/predictions/jobs")
    assert answer.status_code == 200
    jobs = answer.json()["jobs"]
    assert jobs == as_json([anonymous(job.to_dict()) for job in exposed.predictions.jobs()])
    assert not any(str(exposed.root) in str(job) for job in jobs)  # no server path
    assert all("created_by" not in job for job in jobs)
    assert [(j["version"], j["rows"], j["chunks"]) for j in jobs] == [(1, 200, 4), (2, 90, 2)]
    assert [j["dataset"] for j in jobs] == ["predictions/churn:1", "predictions/churn:2"]
    only = (await client.get("/v1/predictions/jobs?model=churn&version=2")).json()["jobs"]
    assert [j["id"] for j in only] == [jobs[1]["id"]]
    assert (await client.get("/v1/predictions/jobs?model=other")).json() == {"jobs": []}
    assert (await client.get("/v1/predictions/jobs?version=x")).status_code == 400


def anonymous(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as the read API shows it to a caller without an admin token."""
    return public(record, Request({"type": "http", "state": {}}))


def test_what_a_non_admin_sees_of_locations_and_errors() -> None:
    assert location("csv:/srv/data/in.csv") == "csv:in.csv"
    assert location("sql:postgresql://app@db/prod:SELECT * FROM secrets") == "sql (hidden)"
    assert location("s3://bucket/deep/out.parquet") == "out.parquet"
    assert location("/home/alice/scores/") == "scores"
    assert location("predictions/churn") == "predictions/churn"
    assert message("cannot read /home/alice/in.csv: gone") == "cannot read …/in.csv: gone"
    admin = Request(
        {"type": "http", "state": {"token": ActiveToken(1, "ops", frozenset({"admin"}))}}
    )
    job = {"input": "csv:/srv/in.csv", "created_by": "alice", "error": "at /srv/x"}
    assert public(job, admin) == job
    assert public(job, Request({"type": "http", "state": {}})) == {
        "input": "csv:in.csv",
        "error": "at …/x",
    }


# -- datasets -------------------------------------------------------------------------------


async def test_dataset_listing_versions_and_schema(
    client: httpx.AsyncClient, exposed: Project
) -> None:
    listed = (await client.get("/v1/datasets")).json()["datasets"]
    assert [d["ref"] for d in listed] == [
        "raw/customers:1", "processed/customers:1", "predictions/churn:2",
    ]  # fmt: skip
    assert listed == as_json([anonymous(d.to_dict()) for d in exposed.datasets.list()])
    raw = (await client.get("/v1/datasets?zone=raw")).json()["datasets"]
    assert [d["ref"] for d in raw] == ["raw/customers:1"]
    churn = (await client.get("/v1/datasets/churn")).json()
    assert churn["name"] == "churn"
    assert churn["zone"] == "predictions"
    assert [v["version"] for v in churn["versions"]] == [2, 1]
    assert churn["versions"][1]["layout"] == "parts"
    shown = (await client.get("/v1/datasets/customers?zone=processed")).json()
    assert [v["ref"] for v in shown["versions"]] == ["processed/customers:1"]
    version = (await client.get("/v1/datasets/churn/versions/1")).json()
    assert version["ref"] == "predictions/churn:1"
    assert version["row_count"] == 200
    schema = exposed.datasets.schema(exposed.datasets.get("predictions/churn:1"))
    assert version["schema"] == [{"name": f.name, "type": str(f.type)} for f in schema]
    assert {"name": "scored_at", "type": "timestamp[us, tz=UTC]"} in version["schema"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v1/datasets/customers", 409, "is in the zones raw, processed; add ?zone=raw"),
        ("/v1/datasets/customers/versions/1", 409, "add ?zone="),
        ("/v1/datasets/customers/versions/1/rows", 409, "add ?zone="),
        ("/v1/datasets/nothing", 404, "no dataset called 'nothing' in any zone"),
        ("/v1/datasets/churn/versions/9", 404, "has no version 9"),
        ("/v1/datasets/churn/versions/9/rows", 404, "has no version 9"),
        ("/v1/datasets/churn?zone=raw", 404, "no dataset raw/churn"),
        ("/v1/datasets/churn/versions/one", 400, "version must be a whole number"),
        ("/v1/datasets/churn/versions/0", 400, "version must be a number from 1"),
        ("/v1/datasets?zone=gold", 400, "zone must be one of raw, processed, predictions"),
        ("/v1/datasets/churn?zone=gold", 400, "zone must be one of raw, processed, predictions"),
        ("/v1/datasets/bad name!", 400, "is not a dataset name"),
        ("/v1/datasets/churn/versions/1/rows?limit=100001", 400, "between 1 and 100000"),
        ("/v1/datasets/churn/versions/1/rows?format=xls", 400, "format must be one of"),
        ("/v1/datasets/churn/versions/1/rows?cursor=xyz", 400, "not one this server gave out"),
    ],
)
async def test_dataset_errors(
    client: httpx.AsyncClient, path: str, status: int, message: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


@pytest.mark.parametrize("ref", ["raw/customers:1", "processed/customers:1", "predictions/churn:1"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_dataset_rows_whole_and_paged_in_every_format(
    client: httpx.AsyncClient, exposed: Project, ref: str, fmt: str
) -> None:
    zone, rest = ref.split("/")
    name, version = rest.split(":")
    url = f"/v1/datasets/{name}/versions/{version}/rows?zone={zone}&format={fmt}"
    expected = exposed.datasets.read(ref)
    whole = await client.get(url)
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith(ACCEPT[fmt])
    assert "x-next-cursor" not in whole.headers
    pages = await follow(client, f"{url}&limit=23")
    assert len(pages) == -(-len(expected) // 23)
    for answer in (whole, *pages[:1]):
        assert parse(fmt, answer.content).column_names == list(expected.columns)
    for table in (
        parse(fmt, whole.content),
        pa.concat_tables(parse(fmt, p.content) for p in pages),
    ):
        frame = table.to_pandas()
        if fmt == "csv":  # CSV has no types: times come back in ns, ids as text
            frame = frame.astype({c: expected[c].dtype for c in expected.columns})
        pd.testing.assert_frame_equal(frame, expected)


async def test_dataset_rows_as_json(client: httpx.AsyncClient, exposed: Project) -> None:
    expected = expected_records(exposed.datasets.read("raw/customers:1"))
    whole = await client.get("/v1/datasets/customers/versions/1/rows?zone=raw")
    assert whole.headers["content-type"] == "application/json"
    assert whole.json() == {"rows": expected, "next_cursor": None}
    assert any(row["charges"] is None for row in expected)  # NaN is null
    pages = await follow(client, "/v1/datasets/customers/versions/1/rows?zone=raw&limit=50")
    bodies = [p.json() for p in pages]
    assert [len(b["rows"]) for b in bodies] == [50, 50, 20]
    assert [b["next_cursor"] for b in bodies] == [
        pages[0].headers["x-next-cursor"], pages[1].headers["x-next-cursor"], None,
    ]  # fmt: skip
    assert [row for b in bodies for row in b["rows"]] == expected
    # parts of several row groups: every start position gives the rest, row for row
    processed = expected_records(exposed.datasets.read("processed/customers:1"))
    paged = await follow(client, "/v1/datasets/customers/versions/1/rows?zone=processed&limit=7")
    assert [row for p in paged for row in p.json()["rows"]] == processed
    # a cursor of one dataset is refused by another
    cursor = pages[0].headers["x-next-cursor"]
    wrong = await client.get(f"/v1/datasets/churn/versions/1/rows?cursor={cursor}")
    assert wrong.status_code == 400
    assert "belongs to the rows of raw/customers:1" in wrong.json()["error"]


def test_batches_after_skips_whole_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"n": list(range(100))}), path, row_group_size=16)
    with pq.ParquetFile(path) as file:
        for skip in (0, 1, 15, 16, 17, 64, 99, 100, 150):
            got = [n for b in batches_after(file, skip, batch_rows=5) for n in b["n"].to_pylist()]
            assert got == list(range(skip, 100)), skip


# -- auth and the wire ------------------------------------------------------------------------


async def test_the_exposure_routes_need_the_read_scope(exposed: Project) -> None:
    database = exposed.database
    predict, _ = TokenStore(database).create("exposure-predict", ["predict"], "tester")
    read, _ = TokenStore(database).create("exposure-read", ["read"], "tester")
    app = create_app(exposed.registry, ["churn:1"], ServeSettings(auth=True))
    async with serving(app) as http:
        for path in ("/v1/predictions", "/v1/predictions/jobs", "/v1/datasets",
                     "/v1/datasets/churn/versions/1/rows"):  # fmt: skip
            assert (await http.get(path)).status_code == 401, path
            denied = await http.get(path, headers={"authorization": f"Bearer {predict}"})
            assert denied.status_code == 403, path
            assert "'read' scope" in denied.json()["error"]
            allowed = await http.get(path, headers={"authorization": f"Bearer {read}"})
            assert allowed.status_code == 200, path


@pytest.fixture(scope="module")
def live(exposed: Project) -> Iterator[LiveServer]:
    """The app over uvicorn on loopback."""
    server = LiveServer(create_app(exposed.registry, ["churn:1"]))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("fmt", ["json", *FORMATS])
def test_a_multi_part_dataset_streams_over_a_socket(
    live: LiveServer, exposed: Project, fmt: str
) -> None:
    url = f"{live.url}/v1/datasets/churn/versions/1/rows?format={fmt}"
    expected = exposed.datasets.read("predictions/churn:1")
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", url) as answer:
            assert answer.status_code == 200
            assert answer.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in answer.headers
            pieces = list(answer.iter_raw())
        content = b"".join(pieces)
        if fmt == "json":
            assert orjson.loads(content) == {
                "rows": expected_records(expected),
                "next_cursor": None,
            }
        else:
            frame = parse(fmt, content).to_pandas()
            if fmt == "csv":
                frame = frame.astype({c: expected[c].dtype for c in expected.columns})
            pd.testing.assert_frame_equal(frame, expected)
        # a client leaving half-way does not hurt the server
        with http.stream("GET", url) as answer:
            next(answer.iter_raw())
        assert http.get(f"{live.url}/health/live").status_code == 200
        assert http.get(f"{live.url}/v1/datasets").status_code == 200
