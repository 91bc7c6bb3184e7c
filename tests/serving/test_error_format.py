"""One error body everywhere: the framework's own errors (an unknown path, a method a route
does not take, a path parameter of the wrong type, a body it cannot parse) answer shipyard's
``{"error", "type", "request_id"}``, never FastAPI's ``{"detail": ...}``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.serving import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so one app serves every test here."""
    return "asyncio"


@pytest.fixture(scope="module")
async def client(served_project: Project) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(served_project.registry, ["churn@production"])) as http:
        yield http


def shipyard_body(answer: httpx.Response, status: int, kind: str, *words: str) -> dict[str, Any]:
    """The answer is ``status`` with shipyard's error body of type ``kind`` saying ``words``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert "detail" not in body
    assert set(body) == {"error", "type", "request_id"}
    assert body["type"] == kind
    assert body["request_id"] == answer.headers["x-request-id"]
    for word in words:
        assert word in body["error"]
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing"),
        ("GET", "/nothing"),
        ("POST", "/v2/models/churn/nothing"),
        ("GET", "/v1/datasets/churn/versions/1/rows/more"),
    ],
)
async def test_an_unknown_path_is_404_in_shipyards_body(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    answer = await client.request(method, path)
    shipyard_body(answer, 404, "NotFoundError", f"no route {method} {path}", "/docs")


async def test_a_long_unknown_path_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/" + "x" * 10_000)
    body = shipyard_body(answer, 404, "NotFoundError")
    assert len(body["error"]) < 300


async def test_a_method_a_route_does_not_take_is_405_in_shipyards_body(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.delete("/v1/models")
    shipyard_body(answer, 405, "MethodNotAllowedError", "/v1/models does not take DELETE", "GET")
    assert answer.headers["allow"] == "GET"
    answer = await client.get("/v1/models/churn/versions/1/predict")
    shipyard_body(answer, 405, "MethodNotAllowedError", "use POST")


async def test_a_path_parameter_of_the_wrong_type_is_422_in_shipyards_body(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/v1/models/churn/versions/latest/predict", content=b"[]")
    shipyard_body(answer, 422, "InvalidArgumentError", "path parameter version", "'latest'")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"model": "churn", "labels": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", ("nested",)),
        (b'{"model": "churn\xff", "labels": []}', ("UTF-8",)),
    ],
    ids=["deeply-nested", "not-utf-8"],
)
async def test_a_feedback_body_the_framework_cannot_parse_is_400_in_shipyards_body(
    client: httpx.AsyncClient, body: bytes, words: tuple[str, ...]
) -> None:
    # before: FastAPI's {"detail": "There was an error parsing the body"}
    answer = await client.post(
        "/v1/feedback", content=body, headers={"content-type": "application/json"}
    )
    shipyard_body(answer, 400, "InvalidArgumentError", *words)


async def test_shipyards_own_errors_keep_their_body(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/models/nope/predict", content=b"[]")
    assert answer.status_code == 404
    assert answer.json()["type"] == "NotFoundError"
    answer = await client.get("/v1/predictions?limit=0")
    shipyard_body(answer, 400, "InvalidArgumentError", "limit must be between 1")
