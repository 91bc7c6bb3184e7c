"""No 500 from a parameter: numbers beyond what the database holds, times beyond what Python
holds, and forged cursors are each a 400 naming what was wrong, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.conftest import postgres_schema
from tests.helpers import make_frame, make_settings
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.datasets.predictions import RowFilter
from shipyard.serving import create_app
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog

pytestmark = pytest.mark.anyio
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
BEYOND_INT64 = "99999999999999999999"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trained: Trained
) -> Iterator[Project]:
    """churn:1 with one batch job (``predictions/churn`` v1 in 3 parts) and 2 logged requests."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("ranges")
    database = (
        postgres_schema()
        if request.param == "postgresql"
        else nullcontext(f"sqlite:///{root / 'meta.db'}")
    )
    with database as url, Project(settings=make_settings(root / "proj", url)) as opened:
        opened.registry.register("churn", model, input_example=frame, trust=True)
        rows, _ = make_frame(150, seed=3)
        rows.to_parquet(root / "rows.parquet")
        opened.predict("churn:1", str(root / "rows.parquet"), chunk_rows=50)
        log = PredictionLog(opened.database)
        answer = Prediction(np.array([1]), np.array([[0.25, 0.75]]), [0, 1])
        for number in range(2):
            log.record("churn", 1, f"req-{number}", 0.002, {"x": np.array([1])}, answer)
        log.flush()
        yield opened


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so one app serves every test of a backend."""
    return "asyncio"


@pytest.fixture(scope="module")
async def client(project: Project) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(project.registry, ["churn:1"])) as http:
        yield http


def cursor(position: Any) -> str:
    """A cursor as the server writes one (Python's json: it writes integers of any size)."""
    raw = position if isinstance(position, bytes) else json.dumps(position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assert_400(answer: httpx.Response, *words: str) -> dict[str, Any]:
    assert answer.status_code == 400, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"] == "InvalidArgumentError"
    assert body["request_id"] == answer.headers["x-request-id"]
    for word in words:
        assert word in body["error"]
    return body


# -- integers beyond the database's ----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/predictions?version={BEYOND_INT64}",
        f"/v1/predictions?version=-{BEYOND_INT64}",
        f"/v1/predictions?source=online&version={BEYOND_INT64}",
        f"/v1/predictions/jobs?version={BEYOND_INT64}",
        f"/v1/datasets/churn/versions/{BEYOND_INT64}",
        f"/v1/datasets/churn/versions/{BEYOND_INT64}/rows",
        f"/v1/datasets/churn/versions/{BEYOND_INT64}/rows?limit=5",
    ],
)
async def test_versions_beyond_the_database_are_400(client: httpx.AsyncClient, path: str) -> None:
    # before: OverflowError from the database driver, a 500
    assert_400(await client.get(path), "version must be a number from 1 to 2147483647")


async def test_versions_in_range_still_work(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/predictions?version=1&limit=2")).status_code == 200
    assert (await client.get("/v1/predictions?version=2147483647")).json()["count"] == 0
    assert (await client.get("/v1/datasets/churn/versions/2147483647")).status_code == 404


# -- times beyond Python's --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("since=0001-01-01T00:00:00%2B05:00", "since"),  # before year 1 in UTC
        ("until=9999-12-31T23:00:00-05:00", "until"),  # after year 9999 in UTC
        ("since=0001-01-01T01:00:00 05:00", "since"),  # the '+' sent unescaped
    ],
)
async def test_times_beyond_python_are_400(
    client: httpx.AsyncClient, query: str, name: str
) -> None:
    # before: OverflowError converting to UTC, a 500
    assert_400(await client.get(f"/v1/predictions?{query}"), f"{name} ", "outside the times")


async def test_the_widest_times_still_work(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/predictions?since=0001-01-01&until=9999-12-31&limit=1")
    assert answer.status_code == 200, answer.text
    assert answer.json()["count"] == 1


# -- forged prediction cursors ----------------------------------------------------------------

PLAIN = RowFilter().fingerprint  # the filters of /v1/predictions without parameters
DEEP = b"[" * 5_000 + b"]" * 5_000
FORGED_PREDICTIONS = {
    "online id beyond int64": {"s": "online", "f": PLAIN, "id": 2**70, "r": 0},
    "online id beyond uint64": {"s": "online", "f": PLAIN, "id": 2**64 - 1, "r": 0},
    "online row beyond int64": {"s": "online", "f": PLAIN, "id": 1, "r": 2**63},
    "batch part beyond int64": {"s": "batch", "f": PLAIN, "j": "x",
                                "t": "2024-01-01T00:00:00+00:00", "p": 2**64, "o": 0},
    "time after 9999 in UTC": {"s": "batch", "f": PLAIN, "j": "x",
                               "t": "9999-12-31T23:59:59-05:00", "p": 0, "o": 0},
    "time before 1 in UTC": {"s": "batch", "f": PLAIN, "j": "x",
                             "t": "0001-01-01T00:00:00+05:00", "p": 0, "o": 0},
    "time not a time": {"s": "batch", "f": PLAIN, "j": "x", "t": "soon", "p": 0, "o": 0},
    "a boolean id": {"s": "online", "f": PLAIN, "id": True, "r": 0},
    "a float id": {"s": "online", "f": PLAIN, "id": 1.5, "r": 0},
    "a negative row": {"s": "online", "f": PLAIN, "id": 1, "r": -2},
    "an unknown key": {"s": "online", "f": PLAIN, "id": 1, "r": 0, "x": 1},
    "a batch key online": {"s": "online", "f": PLAIN, "id": 1, "p": 0},
    "a nested value": {"s": "online", "f": PLAIN, "id": [[[[1]]]], "r": 0},
    "a list": [1, 2, 3],
    "deeply nested": DEEP,
    "deeply nested inside": b'{"s": "online", "f": "' + PLAIN.encode() + b'", "x": ' + DEEP + b"}",
    "not JSON": b"\xff\xfe garbage",
}  # fmt: skip


@pytest.mark.parametrize("position", FORGED_PREDICTIONS.values(), ids=FORGED_PREDICTIONS.keys())
async def test_forged_prediction_cursors_are_400(client: httpx.AsyncClient, position: Any) -> None:
    # before: OverflowError from the driver or the time zone conversion, RecursionError from
    # json, or the value taken as it came (True as 1): a 500 or a wrong page
    answer = await client.get(f"/v1/predictions?cursor={cursor(position)}")
    assert_400(answer, "is not one this server gave out")


async def test_a_cursor_the_server_gave_still_pages(client: httpx.AsyncClient) -> None:
    first = await client.get("/v1/predictions?limit=149")
    second = await client.get(f"/v1/predictions?limit=149&cursor={first.json()['next_cursor']}")
    assert second.status_code == 200, second.text
    assert second.json()["count"] == 3  # the last batch row and the two logged ones


# -- forged dataset rows cursors --------------------------------------------------------------

ROWS = "/v1/datasets/churn/versions/1/rows?zone=predictions&limit=10"
FORGED_ROWS = {
    "a part it does not have": {"d": "predictions/churn:1", "p": 99, "o": 0},
    "a part beyond int64": {"d": "predictions/churn:1", "p": 2**64, "o": 0},
    "a row beyond int64": {"d": "predictions/churn:1", "p": 0, "o": 2**70},
    "a boolean part": {"d": "predictions/churn:1", "p": True, "o": 0},
    "a negative row": {"d": "predictions/churn:1", "p": 0, "o": -1},
    "an unknown key": {"d": "predictions/churn:1", "p": 0, "o": 0, "x": 0},
    "a nested reference": {"d": [["predictions/churn:1"]], "p": 0, "o": 0},
    "deeply nested": DEEP,
    "deeply nested inside": b'{"d": "predictions/churn:1", "p": 0, "o": ' + DEEP + b"}",
}


@pytest.mark.parametrize("position", FORGED_ROWS.values(), ids=FORGED_ROWS.keys())
async def test_forged_dataset_cursors_are_400(client: httpx.AsyncClient, position: Any) -> None:
    body = assert_400(await client.get(f"{ROWS}&cursor={cursor(position)}"))
    # before: a part it does not have said the cursor "belongs to the rows of
    # predictions/churn:1, not predictions/churn:1"
    assert "is not one this server gave out" in body["error"]
    assert "belongs to" not in body["error"]


async def test_a_cursor_of_another_version_says_which(client: httpx.AsyncClient) -> None:
    other = cursor({"d": "predictions/churn:2", "p": 0, "o": 0})
    body = assert_400(await client.get(f"{ROWS}&cursor={other}"))
    assert "belongs to the rows of predictions/churn:2, not predictions/churn:1" in body["error"]
    first = await client.get(ROWS)
    given = first.headers["x-next-cursor"]
    assert (await client.get(f"{ROWS}&cursor={given}")).status_code == 200


# -- feedback rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("row", [2**31, 2**63, 10**30])
async def test_feedback_rows_beyond_the_database_are_400(
    client: httpx.AsyncClient, row: int
) -> None:
    # before: OverflowError from the driver (or PostgreSQL's integer out of range), a 500
    body = json.dumps(
        {"model": "churn", "labels": [{"request_id": "req-0", "row": row, "label": 1}]}
    )
    answer = await client.post(
        "/v1/feedback", content=body, headers={"content-type": "application/json"}
    )
    assert_400(answer, "labels[0].row", "less than or equal to 2147483647")
