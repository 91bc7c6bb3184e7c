"""The Open Inference Protocol v2 over gRPC, spoken by ``tritonclient.grpc`` to a real server.

The servers are real ``shipyard serve --grpc-port`` processes: tritonclient registers the
protocol's protobuf messages (``inference.*``) in the process-wide pool, and so does the
server's generated module, so the two cannot share a process (neither can MLServer or
KServe with tritonclient). This process never imports the server's protobuf modules.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app as cli
from shipyard.core.exceptions import ConfigError, MissingDependencyError
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.serving import ServeSettings, create_app, resolve_serve_settings

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
PROTOCOLS = Path(__file__).parents[2] / "src" / "shipyard" / "serving" / "protocols"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    """The committed modules are what grpcio-tools makes of the committed .proto."""
    package = tmp_path / "shipyard" / "serving" / "protocols"
    package.mkdir(parents=True)
    shutil.copy(PROTOCOLS / "grpc_predict_v2.proto", package)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(package / "grpc_predict_v2.proto"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for name in GENERATED:
        assert (package / name).read_text() == (PROTOCOLS / name).read_text(), (
            f"{name} is stale: regenerate it as grpc_predict_v2.proto's header says"
        )


# -- a real server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A ``shipyard serve`` process: its HTTP URL, gRPC address and project."""

    process: subprocess.Popen[str]
    url: str
    grpc_port: int
    project: Project

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err


def serve_command(project: Project, *args: str) -> tuple[list[str], dict[str, str]]:
    """The ``shipyard serve ARGS`` command line and environment for ``project``."""
    env = {
        **os.environ,
        "SHIPYARD_DATABASE_URL": project.settings.database_url,
        "SHIPYARD_USER": "tester",
        "OMP_NUM_THREADS": "1",
    }
    return [str(Path(sys.executable).parent / "shipyard"), "serve", *args], env


def start_server(project: Project, *args: str) -> Served:
    """``shipyard serve ARGS --port P --grpc-port G`` in the project, once /health/ready is 200."""
    http_port, grpc_port = free_port(), free_port()
    command, env = serve_command(project, *args)
    command += ["--port", str(http_port), "--grpc-port", str(grpc_port), "--no-access-log"]
    process = subprocess.Popen(
        command,
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(process, f"http://127.0.0.1:{http_port}", grpc_port, project)
    deadline = time.monotonic() + 180  # a guard against a hung start, not a speed check
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"shipyard serve did not become ready:\n{served.stop()}")
        try:
            if httpx.get(f"{served.url}/health/ready").status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Iterator[Project]:
    """churn v1 (production) and v2: the trained pipeline, with a text column (plan)."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("grpc")
    with Project(settings=make_settings(root / "proj", f"sqlite:///{root / 'db'}")) as opened:
        opened.registry.register("churn", model, input_example=frame, trust=True)
        opened.registry.register("churn", model, input_example=frame, trust=True)
        opened.registry.promote("churn:1", to="production")
        yield opened


@pytest.fixture(scope="module")
def served(project: Project) -> Iterator[Served]:
    server = start_server(project, "churn@production", "churn:2")
    yield server
    server.stop()


Spec = list[tuple[str, str, np.ndarray]]  # name, datatype, values of each input tensor


def columns(rows: pd.DataFrame) -> Spec:
    """One tensor per column of the model: INT64, FP64 and BYTES."""
    return [
        ("tenure", "INT64", rows["tenure"].to_numpy(np.int64)),
        ("charges", "FP64", rows["charges"].to_numpy(np.float64)),
        ("plan", "BYTES", rows["plan"].to_numpy(object)),
    ]


def tensors(spec: Spec | pd.DataFrame) -> list[triton.InferInput]:
    """tritonclient inputs filled by ``set_data_from_numpy`` (raw contents, its default)."""
    made = []
    for name, datatype, values in columns(spec) if isinstance(spec, pd.DataFrame) else spec:
        tensor = triton.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        made.append(tensor)
    return made


def json_body(spec: Spec) -> dict[str, Any]:
    """The same tensors as the HTTP route's JSON body."""
    return {
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": list(values.shape),
                "data": values.tolist(),
            }
            for name, datatype, values in spec
        ]
    }


def grpc_error(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """The status code name and message of a call that must fail."""
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    return str(caught.value.status()), str(caught.value.message())


# -- health, metadata, inference -------------------------------------------------------------


def test_health_and_metadata(served: Served) -> None:
    client = triton.InferenceServerClient(served.address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert client.is_model_ready("churn", "2")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "shipyard"
    assert "extensions" not in server  # HTTP's binary tensor extension is core over gRPC
    meta = client.get_model_metadata("churn", as_json=True)
    assert meta["name"] == "churn"
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "shipyard-sklearn"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("tenure", "INT64", ["-1"]),
        ("charges", "FP64", ["-1"]),
        ("plan", "BYTES", ["-1"]),
    ]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [
        ("predict", "INT64"),
        ("predict_proba", "FP64"),
    ]
    # the same document as the HTTP route's
    http = httpx.get(f"{served.url}/v2/models/churn").json()
    assert [t["name"] for t in http["inputs"]] == [t["name"] for t in meta["inputs"]]


def test_infer_with_tritonclient_defaults(served: Served, trained: Trained) -> None:
    model, frame, _ = trained
    rows = frame.iloc[10:30]
    client = triton.InferenceServerClient(served.address)
    answer = client.infer("churn", tensors(rows))
    assert answer.get_response().model_name == "churn"
    assert answer.get_response().model_version == "1"
    np.testing.assert_array_equal(answer.as_numpy("predict"), model.predict(rows))
    np.testing.assert_allclose(
        answer.as_numpy("predict_proba"), model.predict_proba(rows), rtol=1e-12
    )
    # one row, a pinned version, one requested output, the client's id echoed
    one = frame.iloc[[3]]
    pinned = client.infer(
        "churn",
        tensors(one),
        model_version="2",
        request_id="row-3",
        outputs=[triton.InferRequestedOutput("predict_proba")],
    )
    response = pinned.get_response()
    assert (response.model_version, response.id) == ("2", "row-3")
    assert [o.name for o in response.outputs] == ["predict_proba"]
    np.testing.assert_allclose(pinned.as_numpy("predict_proba"), model.predict_proba(one))


def test_typed_contents_get_typed_answers(served: Served, trained: Trained) -> None:
    """A request without raw contents (KServe's client, grpcurl) gets typed outputs back."""
    model, frame, _ = trained
    rows = frame.head(8)
    request = service_pb2.ModelInferRequest(model_name="churn", id="typed")
    tenure = request.inputs.add(name="tenure", datatype="INT64", shape=[len(rows)])
    tenure.contents.int64_contents.extend(rows["tenure"].tolist())
    charges = request.inputs.add(name="charges", datatype="FP64", shape=[len(rows)])
    charges.contents.fp64_contents.extend(rows["charges"].tolist())
    plan = request.inputs.add(name="plan", datatype="BYTES", shape=[len(rows), 1])
    plan.contents.bytes_contents.extend(v.encode() for v in rows["plan"])
    with grpc.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request)
        assert not response.raw_output_contents
        predict, proba = response.outputs
        assert (predict.datatype, list(predict.shape)) == ("INT64", [8])
        assert list(predict.contents.int64_contents) == model.predict(rows).tolist()
        assert list(proba.shape) == [8, 2]
        np.testing.assert_allclose(
            np.reshape(proba.contents.fp64_contents, (8, 2)), model.predict_proba(rows)
        )
        # contents in a field its datatype does not use
        tenure.contents.Clear()
        tenure.contents.fp64_contents.extend(rows["tenure"].astype(float).tolist())
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is INT64 but its elements are in contents.fp64_contents" in caught.value.details()


def test_errors_are_status_codes_with_the_http_messages(served: Served, trained: Trained) -> None:
    _, frame, _ = trained
    rows = frame.dropna().head(4)  # JSON has no NaN
    client = triton.InferenceServerClient(served.address)
    code, message = grpc_error(client.infer, "fraud", tensors(rows))
    assert code == "StatusCode.NOT_FOUND"
    assert "churn:1 (production)" in message
    assert grpc_error(client.infer, "churn", tensors(rows), model_version="9")[0] == (
        "StatusCode.NOT_FOUND"
    )
    code, message = grpc_error(client.infer, "churn", tensors(rows), model_version="x")
    assert (code, message.startswith("model version 'x' is not a number")) == (
        "StatusCode.INVALID_ARGUMENT",
        True,
    )
    assert grpc_error(client.is_model_ready, "fraud")[0] == "StatusCode.NOT_FOUND"

    # a wrong shape, a wrong datatype, a missing column, one 2-D tensor for a model with a
    # text column: the HTTP route's own messages
    good = columns(rows)
    short = [(good[0][0], good[0][1], good[0][2][:3]), *good[1:]]
    text = [*good[:2], ("plan", "FP64", np.zeros(4))]
    matrix = [("features", "FP64", np.zeros((4, 3)))]
    for wrong in (short, text, good[:2], matrix):
        code, message = grpc_error(client.infer, "churn", tensors(wrong))
        http = httpx.post(f"{served.url}/v2/models/churn/infer", json=json_body(wrong))
        assert http.status_code == 422
        assert (code, message) == ("StatusCode.INVALID_ARGUMENT", http.json()["error"])

    code, message = grpc_error(
        client.infer, "churn", tensors(rows), outputs=[triton.InferRequestedOutput("score")]
    )
    assert code == "StatusCode.INVALID_ARGUMENT"
    assert message == "unknown output 'score': the model gives predict, predict_proba"


def test_the_prediction_log_and_metrics_count_grpc(served: Served, trained: Trained) -> None:
    _, frame, _ = trained
    rows = frame.iloc[40:43]
    client = triton.InferenceServerClient(served.address)
    client.infer("churn", tensors(rows), headers={"x-request-id": "grpc-logged"})
    with pytest.raises(InferenceServerException):
        client.infer("fraud", tensors(rows))

    store = PredictionLogStore(served.project.database)
    deadline = time.monotonic() + 60  # the log is written in batches, about once a second
    logged = store.read("churn")
    while "grpc-logged" not in set(logged["request_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
        logged = store.read("churn")
    row = logged[logged["request_id"] == "grpc-logged"].iloc[0]
    assert row["version"] == 1
    inputs = json.loads(row["inputs"]) if isinstance(row["inputs"], str) else row["inputs"]
    assert [r["plan"] for r in inputs] == rows["plan"].tolist()
    assert [r["tenure"] for r in inputs] == rows["tenure"].tolist()

    metrics = httpx.get(f"{served.url}/metrics").text
    ok = 'shipyard_requests_total{model="churn",protocol="grpc",status="200",version="1"}'
    missing = 'shipyard_requests_total{model="",protocol="grpc",status="404",version=""}'
    for series in (ok, missing):
        line = next(line for line in metrics.splitlines() if line.startswith(series))
        assert float(line.split()[-1]) >= 1
    assert 'shipyard_request_duration_seconds_count{model="churn",protocol="grpc"' in metrics


# -- auth, several workers, a port in use, a missing extra -----------------------------------


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` on this machine (from /proc/net)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    count += 1
    return count


def test_tokens_and_workers_sharing_the_port(project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    rows = frame.head(3)
    predict, _ = project.tokens.create("grpc-predict", ["predict"], "tester")
    read, _ = project.tokens.create("grpc-read", ["read"], "tester")
    server = start_server(project, "churn", "--auth", "--workers", "2")
    try:
        deadline = time.monotonic() + 180  # the second worker may still be loading
        while _listeners(server.grpc_port) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listeners(server.grpc_port) == 2  # SO_REUSEPORT: one port, two processes

        client = triton.InferenceServerClient(server.address)
        assert client.is_server_live()  # health needs no token
        code, message = grpc_error(client.infer, "churn", tensors(rows))
        assert (code, message) == (
            "StatusCode.UNAUTHENTICATED",
            "missing API token: send the header 'Authorization: Bearer <token>'",
        )
        wrong = {"authorization": "Bearer shp_wrong"}
        assert grpc_error(client.infer, "churn", tensors(rows), headers=wrong) == (
            "StatusCode.UNAUTHENTICATED",
            "invalid or revoked API token",
        )
        code, message = grpc_error(
            client.infer, "churn", tensors(rows), headers={"authorization": f"Bearer {read}"}
        )
        assert code == "StatusCode.PERMISSION_DENIED"
        assert "lacks the 'predict' scope" in message
        assert grpc_error(client.get_model_metadata, "churn")[0] == "StatusCode.UNAUTHENTICATED"
        meta = client.get_model_metadata("churn", headers={"authorization": f"Bearer {read}"})
        assert meta.name == "churn"
        answer = client.infer(
            "churn", tensors(rows), headers={"authorization": f"Bearer {predict}"}
        )
        assert answer.as_numpy("predict").shape == (3,)
    finally:
        server.stop()


def test_a_grpc_port_in_use_stops_the_server(served: Served) -> None:
    command, env = serve_command(served.project, "churn", "--port", str(free_port()))
    command += ["--grpc-port", str(served.grpc_port)]
    done = subprocess.run(
        command, cwd=served.project.root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    assert f"cannot listen for gRPC on 127.0.0.1:{served.grpc_port}" in done.stderr


def test_without_grpcio_the_server_says_what_to_install(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'shipyard\[grpc\]'"):
        create_app(project.registry, ["churn"], ServeSettings(grpc_port=free_port()))
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", project.settings.database_url)
    result = CliRunner().invoke(
        cli, ["serve", "churn", "--grpc-port", "8001", "--project", str(project.root)]
    )
    assert result.exit_code == 1
    assert "pip install 'shipyard[grpc]'" in result.stderr


def test_grpc_port_from_shipyard_toml(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://", "[serving]\ngrpc_port = 8001\n")
    assert resolve_serve_settings(settings).grpc_port == 8001
    assert resolve_serve_settings(settings, grpc_port=9001).grpc_port == 9001
    assert resolve_serve_settings(make_settings(tmp_path / "off", "sqlite://")).grpc_port is None
    bad = make_settings(tmp_path / "bad", "sqlite://", '[serving]\ngrpc_port = "8001"\n')
    with pytest.raises(ConfigError, match=r"\[serving\] grpc_port must be a port number"):
        resolve_serve_settings(bad)
