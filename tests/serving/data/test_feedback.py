"""``POST /v1/feedback``: labels stored (SQLite, PostgreSQL), checked, scoped, joined to answers."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving
from tests.serving.test_wire import LiveServer

from shipyard import Project
from shipyard.datasets.feedback import FeedbackStore
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.registry.tokens import TokenStore
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.auth import required_scope
from shipyard.serving.data.feedback import MAX_LABELS
from shipyard.serving.limits import RequestLimits

pytestmark = pytest.mark.anyio
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def no_feedback_left(served_project: Project) -> Iterator[None]:
    """Each test starts with no labels in the module's served project."""
    yield
    FeedbackStore(served_project.database).prune(None, datetime.now(UTC) + timedelta(seconds=1))


def stored(project: Project, model: str = "churn") -> list[dict[str, Any]]:
    frame = FeedbackStore(project.database).read(model)
    return frame[["request_id", "row", "key", "label"]].to_dict("records")


async def test_labels_are_stored_and_replaced(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    project.registry.register("churn", model, input_example=frame.head(5), trust=True)
    project.registry.register("fraud", model, input_example=frame.head(5), trust=True)
    app = create_app(project.registry, ["churn:1"])
    async with serving(app) as http:
        body = {
            "model": "churn",
            "labels": [
                {"request_id": "r-1", "row": 1, "label": 1},
                {"key": "C-17", "label": "yes"},
            ],
        }
        answer = await http.post("/v1/feedback", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"model": "churn", "accepted": 2}
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-request-id"]
        again = {"model": "churn", "labels": [{"key": "C-17", "label": "no"}]}
        refused = await http.post("/v1/feedback", json=again)
        assert refused.status_code == 409
        assert "replace=true" in refused.json()["error"]
        assert (await http.post("/v1/feedback", json=body)).json()["accepted"] == 2  # the same
        replaced = await http.post("/v1/feedback?replace=true", json=again)
        assert replaced.json()["accepted"] == 1
        # a model of the registry the server does not serve takes feedback too
        other = {"model": "fraud", "labels": [{"key": "1", "label": 0.5}]}
        assert (await http.post("/v1/feedback", json=other)).status_code == 200
        assert (await http.post("/v1/feedback", json={"model": "churn", "labels": []})).json() == {
            "model": "churn",
            "accepted": 0,
        }
    assert stored(project) == [
        {"request_id": "r-1", "row": 1, "key": "", "label": 1},
        {"request_id": "", "row": 0, "key": "C-17", "label": "no"},
    ]
    assert stored(project, "fraud") == [{"request_id": "", "row": 0, "key": "1", "label": 0.5}]


@pytest.fixture(scope="module")
def app_client(served_project: Project) -> Iterator[LiveServer]:
    """churn@production and churn:2 served over uvicorn on loopback."""
    server = LiveServer(create_app(served_project.registry, ["churn@production", "churn:2"]))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_unknown_model_is_404_in_the_servers_error_body(app_client: LiveServer) -> None:
    body = {"model": "nobody", "labels": [{"key": "k", "label": 1}]}
    answer = httpx.post(f"{app_client.url}/v1/feedback", json=body, headers={"x-request-id": "q1"})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "no registered model named 'nobody': feedback is kept for the models of this "
        "server's registry (it serves churn:1 (production), churn:2); check the name, or "
        "register the model first",
        "type": "NotFoundError",
        "request_id": "q1",
    }


TOO_MANY = {"model": "churn", "labels": [{"key": "k", "label": 1}] * (MAX_LABELS + 1)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"labels": []}, r"^model is required; send \{\"model\": NAME"),
        ({"model": "churn", "labels": [], "version": 2}, r"^version is not a field .* model and"),
        (
            {"model": "churn", "labels": [{"key": "k", "label": 1}, {"key": "k", "rowid": 1}]},
            r"^labels\[1\]\.label is required",
        ),
        (
            {"model": "churn", "labels": [{"key": "k", "label": 1}, {"kee": "k", "label": 1}]},
            r"^labels\[1\]\.kee is not a field .* \(the fields are label, request_id, row and key",
        ),
        (
            {"model": "churn", "labels": [{"request_id": "r", "row": -1, "label": 1}]},
            r"^labels\[0\]\.row: input should be greater than or equal to 0 \(got -1\)",
        ),
        (
            {"model": "churn", "labels": [{"request_id": "r", "row": "2", "label": 1}]},
            r"^labels\[0\]\.row: input should be a valid integer \(got '2'\)",
        ),
        (
            {"model": "churn", "labels": [{"key": "k", "label": 1}, {"key": "k", "label": None}]},
            r"^labels\[1\]\.label is missing \(None\)",
        ),
        (
            {"model": "churn", "labels": [{"key": "k", "label": [1]}]},
            r"^labels\[0\]\.label must be a JSON scalar",
        ),
        (
            {"model": "churn", "labels": [{"key": "k", "request_id": "r", "label": 1}]},
            r"^labels\[0\] has both request_id 'r' and key 'k'",
        ),
        ({"model": "churn", "labels": [{"label": 1}]}, r"^labels\[0\] names no prediction"),
        ({"model": "churn:2", "labels": []}, r"^model must be a registered model's name"),
        ({"model": "churn", "labels": {"key": "k"}}, r"^labels: input should be a valid list"),
        (TOO_MANY, rf"^labels holds more than {MAX_LABELS} entries; send them in several"),
        ([{"key": "k", "label": 1}], r"^the request body must be a JSON object"),
        (b"{not json", r"^the request body is not valid JSON"),
        (b"", r"^the request body is empty"),
    ],
)
def test_bad_bodies_are_400_naming_the_entry(
    app_client: LiveServer, served_project: Project, body: Any, message: str
) -> None:
    url = f"{app_client.url}/v1/feedback"
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        answer = httpx.post(url, content=body, headers=headers)
    else:
        answer = httpx.post(url, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["type"] == "InvalidArgumentError"
    assert error["request_id"] == answer.headers["x-request-id"]
    assert re.search(message, error["error"]), error["error"]
    assert stored(served_project) == []  # all or nothing


def test_the_route_is_documented(app_client: LiveServer) -> None:
    schema = httpx.get(f"{app_client.url}/openapi.json").json()
    route = schema["paths"]["/v1/feedback"]["post"]
    assert route["tags"] == ["monitoring"]
    body = route["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/FeedbackRequest")
    label = schema["components"]["schemas"]["LabelEntry"]
    assert set(label["properties"]) == {"label", "request_id", "row", "key"}
    assert label["additionalProperties"] is False


async def test_small_bodies_are_parsed_inline_and_large_ones_off_the_loop(
    served_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body above ``thread_parse_bytes`` is parsed and checked in a worker thread (as the
    prediction routes parse theirs), so a big label upload never holds the event loop."""
    from shipyard.serving.data import feedback

    parsed_in: list[int] = []
    parse = feedback.parse_feedback

    def spy(body: bytes) -> Any:
        parsed_in.append(threading.get_ident())
        return parse(body)

    monkeypatch.setattr(feedback, "parse_feedback", spy)
    limits = RequestLimits(thread_parse_bytes=64 * 1024)
    settings = ServeSettings(limits=limits, prediction_log=False)
    app = create_app(served_project.registry, ["churn@production"], settings)
    small = {"model": "churn", "labels": [{"key": "small-1", "label": 1}]}
    large = {
        "model": "churn",
        "labels": [{"key": f"large-{i}", "label": i % 2} for i in range(MAX_LABELS)],
    }
    async with serving(app) as http:
        loop_thread = threading.get_ident()
        answer = await http.post("/v1/feedback", json=small)
        assert answer.json() == {"model": "churn", "accepted": 1}
        assert parsed_in == [loop_thread]  # a small body stays inline
        big = orjson.dumps(large)
        assert len(big) > 64 * 1024
        answer = await http.post(
            "/v1/feedback", content=big, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"model": "churn", "accepted": MAX_LABELS}
        assert len(parsed_in) == 2
        assert parsed_in[1] != loop_thread  # the large one in a worker thread
        bad = [{"key": f"bad-{i}", "label": 1} for i in range(3000)] + [{"kee": "x", "label": 1}]
        refused = await http.post("/v1/feedback", json={"model": "churn", "labels": bad})
        assert refused.status_code == 400  # errors found in the thread: the same 400
        assert refused.json()["error"].startswith("labels[3000].kee is not a field")
    assert len(stored(served_project)) == MAX_LABELS + 1


def test_feedback_needs_the_predict_scope() -> None:
    assert required_scope("POST", "/v1/feedback") == "predict"
    assert required_scope("GET", "/v1/feedback") == "read"


async def test_tokens_are_enforced(served_project: Project) -> None:
    database = served_project.database
    predict, _ = TokenStore(database).create("fb-predict", ["predict"], "tester")
    read, _ = TokenStore(database).create("fb-read", ["read"], "tester")
    admin, _ = TokenStore(database).create("fb-admin", ["admin"], "tester")
    app = create_app(served_project.registry, ["churn@production"], ServeSettings(auth=True))
    body = {"model": "churn", "labels": [{"key": "auth-1", "label": 1}]}
    async with serving(app) as http:
        missing = await http.post("/v1/feedback", json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        denied = await http.post("/v1/feedback", json=body, headers=bearer(read))
        assert denied.status_code == 403
        assert "'predict' scope" in denied.json()["error"]
        assert stored(served_project) == []
        for token in (predict, admin):
            allowed = await http.post("/v1/feedback", json=body, headers=bearer(token))
            assert allowed.status_code == 200
            assert allowed.json() == {"model": "churn", "accepted": 1}
    assert FeedbackStore(database).read("churn")["key"].tolist() == ["auth-1"]


def logged(project: Project, request_ids: set[str], timeout: float = 10.0) -> pd.DataFrame:
    """The prediction log's rows of ``request_ids``, once the writer thread wrote them all."""
    deadline = time.monotonic() + timeout
    while True:
        log = PredictionLogStore(project.database).read("churn", limit=100_000)
        mine = log[log["request_id"].isin(request_ids)]
        if set(mine["request_id"]) == request_ids:
            return mine
        assert time.monotonic() < deadline, "the predictions never reached the log"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("path", "client_id"),
    [
        ("/v1/models/churn/predict", None),  # the ASGI fast path, a server-made id
        ("/v1/models/churn/predict", "client-7f3a"),  # the client's own X-Request-ID
        ("/v1/models/churn/versions/2/predict", None),  # a FastAPI route
    ],
)
def test_feedback_for_an_answer_joins_its_logged_prediction(
    app_client: LiveServer, served_project: Project, trained: Trained, path: str, client_id: str
) -> None:
    _, frame, _ = trained
    rows = frame.head(3)
    headers = {"x-request-id": client_id} if client_id else {}
    with httpx.Client(base_url=app_client.url, timeout=10) as http:
        answer = http.post(path, content=records(rows), headers=headers)
        assert answer.status_code == 200
        rid = answer.headers["x-request-id"]
        assert rid == answer.json()["request_id"]
        if client_id:
            assert rid == client_id
        labels = [
            {"request_id": rid, "row": 1, "label": 0},
            {"request_id": rid, "row": 2, "label": 1},
        ]
        sent = http.post("/v1/feedback", json={"model": "churn", "labels": labels})
        assert sent.status_code == 200, sent.text
        assert sent.json() == {"model": "churn", "accepted": 2}
    log = logged(served_project, {rid})
    truth = FeedbackStore(served_project.database).online_truth("churn", log)
    assert truth["request_id"].tolist() == [rid, rid]
    assert truth["row"].tolist() == [1, 2]
    assert truth["label"].tolist() == [0, 1]
    assert truth["prediction"].tolist() == answer.json()["predictions"][1:]
    assert truth["probabilities"].tolist() == answer.json()["probabilities"][1:]
    assert truth["version"].tolist() == [answer.json()["version"]] * 2
    assert truth["classes"].tolist() == [answer.json()["classes"]] * 2
