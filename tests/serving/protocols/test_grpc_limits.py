"""The gRPC transport honours the HTTP routes' request limits (``[serving.limits]``).

A real ``shipyard serve --grpc-port`` with small limits, spoken to by ``tritonclient.grpc``
(see tests/serving/test_grpc.py for why the server runs in its own process): a message above
``max_body_bytes`` is refused by gRPC itself before it is read; too many rows or columns, a
long column name or text value are RESOURCE_EXHAUSTED with the HTTP route's own message,
naming the limit and how to raise it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.test_grpc import Served, columns, grpc_error, json_body, start_server, tensors

from shipyard import Project

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
LIMITS = (
    "--max-body-bytes",
    "64KiB",
    "--max-rows",
    "500",
    "--max-columns",
    "3",
    "--max-string-length",
    "20",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Iterator[Served]:
    """churn served over HTTP and gRPC with :data:`LIMITS`."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("grpc-limits")
    with Project(settings=make_settings(root / "proj", f"sqlite:///{root / 'db'}")) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        server = start_server(project, "churn", *LIMITS)
        try:
            yield server
        finally:
            server.stop()


def _same_over_http(served: Served, spec: list[tuple[str, str, np.ndarray]], message: str) -> None:
    """The HTTP route refuses the same tensors with 413 and the same message."""
    http = httpx.post(f"{served.url}/v2/models/churn/infer", json=json_body(spec))
    assert http.status_code == 413
    assert http.json()["error"] == message


def test_rows_columns_names_and_text_are_refused_as_over_http(
    served: Served, trained: Trained
) -> None:
    model, frame, _ = trained
    rows = pd.concat([frame] * 3).dropna()  # no NaN: JSON (the HTTP twin) has none
    client = triton.InferenceServerClient(served.address)

    many = columns(rows.head(501))
    code, message = grpc_error(client.infer, "churn", tensors(many))
    assert code == "StatusCode.RESOURCE_EXHAUSTED"
    assert message.startswith("the request has 501 rows, above this server's limit of 500")
    assert "`shipyard serve --max-rows` or `max_rows` in [serving.limits]" in message
    _same_over_http(served, many, message)

    wide = [*columns(rows.head(3)), ("extra", "FP64", np.zeros(3))]
    code, message = grpc_error(client.infer, "churn", tensors(wide))
    assert code == "StatusCode.RESOURCE_EXHAUSTED"
    assert message.startswith("the request has 4 columns, above this server's limit of 3")
    assert "--max-columns" in message  # counted before decoding (HTTP: 422, unknown column)

    # a long name is not one of the model's columns: refused as over HTTP (422)
    named = [*columns(rows.head(3))[:2], ("p" * 30, "BYTES", np.array(["a"] * 3, object))]
    code, message = grpc_error(client.infer, "churn", tensors(named))
    http = httpx.post(f"{served.url}/v2/models/churn/infer", json=json_body(named))
    assert (code, message) == ("StatusCode.INVALID_ARGUMENT", http.json()["error"])
    assert http.status_code == 422

    text = rows.head(3).assign(plan="x" * 30)
    code, message = grpc_error(client.infer, "churn", tensors(text))
    assert code == "StatusCode.RESOURCE_EXHAUSTED"
    assert message.startswith("column 'plan' holds a value of 30 characters")
    assert "`max_string_length` in [serving.limits]" in message
    _same_over_http(served, columns(text), message)

    # within the limits: answered
    within = rows.head(500)
    answer = client.infer("churn", tensors(within))
    np.testing.assert_array_equal(answer.as_numpy("predict"), model.predict(within))

    metrics = httpx.get(f"{served.url}/metrics").text
    counted = {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "shipyard_requests_total" and sample.labels["protocol"] == "grpc"
    }
    assert counted == {"413": 3, "422": 1, "200": 1}


def test_a_message_above_max_body_bytes_is_refused_before_it_is_read(
    served: Served, trained: Trained
) -> None:
    _, frame, _ = trained
    # within max_rows; about 100 KB of tensors (the long text is never looked at)
    rows = pd.concat([frame] * 2).head(480).assign(plan="x" * 200)
    client = triton.InferenceServerClient(served.address)
    code, message = grpc_error(client.infer, "churn", tensors(rows))
    assert code == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than max" in message
    assert "vs. 65536)" in message  # the server's max_body_bytes, 64 KiB
    assert client.is_server_live()  # refused, not a crash
