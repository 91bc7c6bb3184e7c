"""Bounded requests: body and inflated bytes, rows, columns, text, read timeouts, parsing off
the event loop, and errors that never echo more than a short prefix of the input."""

from __future__ import annotations

import asyncio
import gzip
import resource
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving
from tests.serving.test_wire import LiveServer

from shipyard import Project
from shipyard.core.exceptions import ConfigError, InvalidArgumentError, PayloadTooLargeError
from shipyard.core.settings import Settings
from shipyard.serving import ServeSettings, create_app, resolve_serve_settings
from shipyard.serving.limits import RequestLimits, inflate
from shipyard.serving.read_timeouts import timed_protocol

pytestmark = pytest.mark.anyio
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]

SMALL = RequestLimits(
    max_body_bytes=2 * 1024 * 1024,
    max_decompressed_bytes=1024 * 1024,
    max_rows=10,
    max_columns=5,
    max_string_length=50,
)


def make_app(project: Project, limits: RequestLimits = SMALL) -> FastAPI:
    """churn served with ``limits``, without the prediction log."""
    settings = ServeSettings(limits=limits, prediction_log=False)
    return create_app(project.registry, ["churn@production"], settings)


@pytest.fixture
async def client(served_project: Project) -> AsyncIterator[httpx.AsyncClient]:
    """A client of churn served with :data:`SMALL` limits."""
    async with serving(make_app(served_project)) as connected:
        yield connected


def v2_body(frame: pd.DataFrame) -> dict[str, Any]:
    """An Open Inference v2 JSON request for the rows of ``frame``."""
    charges = [None if pd.isna(v) else v for v in frame["charges"]]
    return {
        "inputs": [
            {
                "name": "tenure",
                "shape": [len(frame)],
                "datatype": "INT64",
                "data": frame["tenure"].tolist(),
            },
            {"name": "charges", "shape": [len(frame)], "datatype": "FP64", "data": charges},
            {
                "name": "plan",
                "shape": [len(frame)],
                "datatype": "BYTES",
                "data": frame["plan"].tolist(),
            },
        ]
    }


# -- body bytes -------------------------------------------------------------------------------


async def test_a_body_above_the_limit_is_refused_with_413_saying_how_to_raise_it(
    client: httpx.AsyncClient,
) -> None:
    big = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    for path in (
        "/v1/models/churn/predict",
        "/invocations",
        "/v2/models/churn/infer",
        "/v1/models/churn/versions/1/predict",
        "/v1/feedback",
    ):
        response = await client.post(
            path, content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, path
        body = response.json()
        assert body["type"] == "PayloadTooLargeError"
        assert "2 MiB" in body["error"]
        assert "--max-body-bytes" in body["error"]
        assert "max_body_bytes" in body["error"]
        assert body["request_id"] == response.headers["x-request-id"]
        assert response.headers["connection"] == "close"


async def test_a_chunked_body_is_counted_as_it_streams_in(client: httpx.AsyncClient) -> None:
    chunks_sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):  # 16 MiB if it were all read
            chunks_sent += 1
            yield b" " * (16 * 1024)

    for path in ("/v1/models/churn/predict", "/v1/models/churn/versions/1/predict"):
        chunks_sent = 0
        response = await client.post(path, content=stream())
        assert response.status_code == 413, path
        assert "2 MiB" in response.json()["error"]
        assert chunks_sent < 200  # refused once past the limit, not after reading it all


async def test_a_body_refused_as_it_streams_in_is_counted_once_with_its_status(
    client: httpx.AsyncClient,
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(200):  # 3 MiB, above the 2 MiB limit
            yield b" " * (16 * 1024)

    paths = {  # the fast path (native, MLflow, v2) and a FastAPI route (native's version form)
        "/v1/models/churn/predict": "native",
        "/invocations": "mlflow",
        "/v2/models/churn/infer": "v2",
        "/v1/models/churn/versions/1/predict": "native",
    }
    for path in paths:
        response = await client.post(path, content=stream())
        assert response.status_code == 413, path
    exposition = (await client.get("/metrics")).text
    counted: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "shipyard_requests_total":
                key = (sample.labels["protocol"], sample.labels["status"])
                counted[key] = counted.get(key, 0) + sample.value
    assert counted == {("native", "413"): 2, ("mlflow", "413"): 1, ("v2", "413"): 1}


# -- inflated bytes ---------------------------------------------------------------------------


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body of ``inflated`` zero bytes (about 1000 times smaller)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, compressor.flush()])


async def test_a_gzip_bomb_is_refused_without_inflating_it(client: httpx.AsyncClient) -> None:
    bomb = gzip_bomb(1024**3)  # 1 GiB of zeros
    assert len(bomb) < 1.1 * 1024 * 1024
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    response = await client.post(
        "/v2/models/churn/infer", content=bomb, headers={"content-encoding": "gzip"}
    )
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert response.status_code == 413
    assert "inflates to more than this server's limit of 1 MiB" in response.json()["error"]
    assert "--max-decompressed-bytes" in response.json()["error"]
    assert (peak_after - peak_before) * 1024 < 50 * 1024 * 1024  # not the 1 GiB it holds


def test_inflate_stops_at_the_limit_for_gzip_and_deflate() -> None:
    data = bytes(10_000)
    for encoding, wbits in (("gzip", 31), ("deflate", 15)):
        compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
        body = compressor.compress(data) + compressor.flush()
        assert inflate(body, encoding, 10_000) == data
        with pytest.raises(PayloadTooLargeError, match=r"inflates to more than .* 9999 bytes"):
            inflate(body, encoding, 9_999)
        with pytest.raises(InvalidArgumentError, match="corrupt"):
            inflate(b"not " + body, encoding, 10_000)


async def test_a_gzip_body_within_the_limit_is_served(
    client: httpx.AsyncClient, trained: Trained
) -> None:
    model, frame, _ = trained
    rows = frame.head(3)
    body = gzip.compress(orjson.dumps(v2_body(rows)))
    response = await client.post(
        "/v2/models/churn/infer", content=body, headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == model.predict(rows).tolist()
    truncated = await client.post(
        "/v2/models/churn/infer", content=body[:-12], headers={"content-encoding": "gzip"}
    )
    assert truncated.status_code == 400
    assert "corrupt" in truncated.json()["error"]


# -- rows, columns, text ----------------------------------------------------------------------


async def test_too_many_rows_are_refused_on_every_protocol(
    client: httpx.AsyncClient, trained: Trained
) -> None:
    _, frame, _ = trained
    rows = frame.head(11)
    split = rows.to_json(orient="split", index=False).encode()
    answers = {
        "native records": await client.post("/v1/models/churn/predict", content=records(rows)),
        "native split": await client.post("/v1/models/churn/predict", content=split),
        "mlflow": await client.post(
            "/invocations",
            content=orjson.dumps({"dataframe_split": orjson.loads(split)}),
            headers={"content-type": "application/json"},
        ),
        "mlflow csv": await client.post(
            "/invocations",
            content=rows.to_csv(index=False),
            headers={"content-type": "text/csv"},
        ),
        "v2": await client.post("/v2/models/churn/infer", json=v2_body(rows)),
    }
    for name, response in answers.items():
        message = response.json().get("error") or response.json().get("message")
        assert "the request has 11 rows, above this server's limit of 10" in message, name
        assert "--max-rows" in message, name
        # MLflow's protocol answers every bad request 400, as MLflow does
        assert response.status_code == (400 if name.startswith("mlflow") else 413), name
    ten = await client.post("/v1/models/churn/predict", content=records(frame.head(10)))
    assert ten.status_code == 200


async def test_too_many_columns_are_refused_before_they_are_built(
    client: httpx.AsyncClient,
) -> None:
    row = {f"c{i}": 1 for i in range(6)}
    native = await client.post("/v1/models/churn/predict", json=[row])
    assert native.status_code == 413
    assert "the request has 6 columns" in native.json()["error"]
    assert "--max-columns" in native.json()["error"]
    header = ",".join(f"c{i}" for i in range(100_000))
    csv = await client.post(
        "/invocations",
        content=f"{header}\n{','.join('1' * 100_000)}\n"[:60_000],
        headers={"content-type": "text/csv"},
    )
    assert csv.status_code == 400
    assert "the CSV header names" in csv.json()["message"]


async def test_long_names_and_text_are_refused(client: httpx.AsyncClient) -> None:
    pad = [{"tenure": 1, "charges": 2.0, "plan": "basic"}] * 3
    long_name = await client.post(
        "/v1/models/churn/predict", json=[{"tenure": 1, "charges": 2.0, "x" * 51: 1}, *pad]
    )
    assert long_name.status_code == 413
    assert "a column name is 51 characters long" in long_name.json()["error"]
    long_text = await client.post(
        "/v1/models/churn/predict", json=[{"tenure": 1, "charges": 2.0, "plan": "p" * 51}, *pad]
    )
    assert long_text.status_code == 413
    assert "column 'plan' holds a value of 51 characters" in long_text.json()["error"]
    assert "--max-string-length" in long_text.json()["error"]


async def test_errors_echo_only_a_short_prefix_of_the_input(served_project: Project) -> None:
    roomy = RequestLimits(max_string_length=10**8)
    name = "n" * (2 * 1024 * 1024)
    async with serving(make_app(served_project, roomy)) as client:
        row = {"tenure": 1, "charges": 2.0, "plan": "basic"}
        unknown = await client.post("/v1/models/churn/predict", json=[{**row, name: 1}])
        bad_value = await client.post("/v1/models/churn/predict", json=[{**row, "tenure": name}])
    for response in (unknown, bad_value):
        assert response.status_code == 422
        assert len(response.content) < 2000  # not the 2 MB sent
        assert "n" * 99 + "…" in response.json()["error"]
    assert unknown.json()["column"] == "n" * 100 + "…"


# -- parsing off the event loop ----------------------------------------------------------------


async def test_a_big_body_is_parsed_off_the_loop_while_health_answers(
    served_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    limits = RequestLimits(max_rows=10**6, thread_parse_bytes=64 * 1024)
    app = make_app(served_project, limits)
    async with serving(app) as client:
        served = app.state.server.models.get("churn")
        validate = served.validate
        loop_thread = threading.get_ident()
        entered, health_done = threading.Event(), threading.Event()
        seen: dict[str, Any] = {}

        def spy(columns: Any) -> Any:
            seen["thread"] = threading.get_ident()
            if len(next(iter(columns.values()))) > 100:  # the big request: hold its parsing
                entered.set()
                seen["health answered while parsing"] = health_done.wait(20)
            return validate(columns)

        served.validate = spy
        small = await client.post("/v1/models/churn/predict", content=records(frame.head(2)))
        assert small.status_code == 200
        assert seen["thread"] == loop_thread  # small bodies stay inline

        big_body = records(pd.concat([frame] * 10))  # 4000 rows, ~250 KB
        big = asyncio.ensure_future(client.post("/v1/models/churn/predict", content=big_body))
        while not entered.is_set():  # the loop keeps running while the big body parses
            await asyncio.sleep(0.01)
        health = await client.get("/health/live")
        health_done.set()
        answer = await big
    assert health.status_code == 200
    assert seen["health answered while parsing"]
    assert seen["thread"] != loop_thread
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 4000


# -- over a socket: streaming and read timeouts --------------------------------------------------


class TimedServer(LiveServer):
    """:class:`LiveServer` with the protocol ``shipyard serve`` runs (read timeouts)."""

    def __init__(self, app: FastAPI, limits: RequestLimits) -> None:
        super().__init__(app)
        self.server.config.http = timed_protocol(limits)
        self.port = self.socket.getsockname()[1]

    def connect(self) -> socket.socket:
        """A raw connection to the server (reads time out after 10 s)."""
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return connection


def read_response(connection: socket.socket) -> bytes:
    """One whole response (headers and its ``content-length`` bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


@pytest.fixture
def timed_server(served_project: Project) -> Iterator[TimedServer]:
    """churn over loopback with half-second read timeouts and a 64 KiB body limit."""
    limits = RequestLimits(max_body_bytes=64 * 1024, header_timeout_s=0.5, body_timeout_s=0.5)
    server = TimedServer(make_app(served_project, limits), limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_partial_headers_and_bodies_are_timed_out(
    timed_server: TimedServer, trained: Trained
) -> None:
    _, frame, _ = trained
    with timed_server.connect() as silent:
        assert read_all(silent) == b""  # connected, sent nothing: closed
    with timed_server.connect() as partial_headers:
        partial_headers.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\n")
        answer = read_all(partial_headers)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request headers did not arrive within 0.5 s" in answer
    assert b"--header-timeout" in answer
    with timed_server.connect() as partial_body:
        partial_body.sendall(
            b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n\r\n[{"
        )
        answer = read_all(partial_body)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body did not arrive within 0.5 s" in answer
    body = records(frame.head(2))
    request = (
        b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    with timed_server.connect() as kept:  # a whole request, then half of the next one
        kept.sendall(request)
        first = read_response(kept)
        time.sleep(0.7)  # idle between requests is not a timeout of ours (keep-alive's 5 s)
        kept.sendall(request[:20])
        rest = read_all(kept)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 408 ")
    with httpx.Client(base_url=timed_server.url) as client:
        assert client.post("/v1/models/churn/predict", content=body).status_code == 200


def test_a_declared_length_above_the_limit_is_refused_before_the_body(
    timed_server: TimedServer,
) -> None:
    with timed_server.connect() as connection:
        connection.sendall(
            b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\ncontent-length: 1073741824\r\n\r\n"
        )
        answer = read_all(connection)  # answered and closed without a byte of the body
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer
    assert b"larger than this server's limit of 64 KiB" in answer
    with httpx.Client(base_url=timed_server.url) as client:
        assert client.get("/health/live").status_code == 200


# -- settings ----------------------------------------------------------------------------------


def test_limits_come_from_shipyard_toml_with_flags_on_top(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text(
        '[serving.limits]\nmax_body_bytes = "8MiB"\nmax_rows = 500\nheader_timeout_s = 5\n',
        encoding="utf-8",
    )
    settings = Settings.load(tmp_path, environ={})
    limits = resolve_serve_settings(settings, limits={"max_rows": 20, "max_columns": None}).limits
    assert limits.max_body_bytes == 8 * 1024 * 1024
    assert limits.max_rows == 20  # the flag wins
    assert limits.max_columns == 4096  # the default
    assert limits.header_timeout_s == 5
    assert resolve_serve_settings(settings).limits.max_rows == 500
    flagged = resolve_serve_settings(settings, limits={"max_decompressed_bytes": "1GiB"})
    assert flagged.limits.max_decompressed_bytes == 1024**3


def test_wrong_limits_name_the_key_or_the_flag(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text(
        '[serving.limits]\nmax_body_bytes = "lots"\nmax_rowz = 5\n', encoding="utf-8"
    )
    with pytest.raises(
        ConfigError,
        match=r"\[serving.limits\] is invalid: max_body_bytes: .*"
        r"max_rowz: Extra inputs",
    ):
        resolve_serve_settings(Settings.load(tmp_path, environ={}))
    (tmp_path / "shipyard.toml").write_text("", encoding="utf-8")
    with pytest.raises(InvalidArgumentError, match="--max-body-bytes: could not parse"):
        resolve_serve_settings(
            Settings.load(tmp_path, environ={}), limits={"max_body_bytes": "big"}
        )
