"""The OpenAPI document describes the API: bodies, errors, security and media types."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.auth import required_scope
from shipyard.serving.openapi import SECURITY_SCHEME

PREDICTION_ROUTES = (
    "/v1/models/{ref}/predict",
    "/v1/models/{name}/versions/{version}/predict",
    "/v1/models/{name}/aliases/{alias}/predict",
    "/invocations",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)
ERROR_BODIES = {"Error", "AuthError", "MlflowError", "V2Error"}


def _document(project: Project, *, auth: bool) -> dict[str, Any]:
    app = create_app(project.registry, ["churn@production"], ServeSettings(auth=auth))
    return app.openapi()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def _refs(schema: Any) -> set[str]:
    """The component names ``schema`` refers to (at any depth)."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if "$ref" in schema else set()
        return found.union(*(_refs(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(value) for value in schema))
    return set()


@pytest.fixture(scope="module")
def open_doc(served_project: Project) -> dict[str, Any]:
    return _document(served_project, auth=False)


@pytest.fixture(scope="module")
def auth_doc(served_project: Project) -> dict[str, Any]:
    return _document(served_project, auth=True)


def test_prediction_routes_document_their_bodies(open_doc: dict[str, Any]) -> None:
    paths = open_doc["paths"]
    for path in PREDICTION_ROUTES:
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        assert "application/json" in body["content"]
    native = paths["/v1/models/{ref}/predict"]["post"]
    assert _refs(native["requestBody"]) == {"NativeRequest"}
    assert _refs(native["responses"]["200"]) == {"NativePrediction"}
    mlflow = paths["/invocations"]["post"]["requestBody"]["content"]
    assert set(mlflow) == {"application/json", "text/csv"}
    forms = open_doc["components"]["schemas"]["MlflowRequest"]["oneOf"]
    assert [next(iter(form["required"])) for form in forms] == [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ]
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "Inference-Header-Content-Length" in [p["name"] for p in infer["parameters"]]
    tensor = open_doc["components"]["schemas"]["V2Tensor"]
    assert tensor["required"] == ["name", "shape", "datatype"]
    assert "BYTES" in tensor["properties"]["datatype"]["enum"]


def test_errors_are_documented_in_the_body_each_route_answers(open_doc: dict[str, Any]) -> None:
    paths = open_doc["paths"]
    native = paths["/v1/models/{ref}/predict"]["post"]["responses"]
    assert {"400", "404", "413", "422"} <= set(native)
    assert all(_refs(native[status]) == {"Error"} for status in ("400", "404", "413", "422"))
    mlflow = paths["/invocations"]["post"]["responses"]
    assert _refs(mlflow["400"]) == {"MlflowError"}
    assert set(mlflow["415"]["content"]) == {"text/plain"}
    infer = paths["/v2/models/{name}/infer"]["post"]["responses"]
    assert _refs(infer["422"]) == {"V2Error"}
    assert _refs(paths["/v1/datasets/{name}"]["get"]["responses"]["404"]) == {"Error"}
    schemas = open_doc["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error", "type", "request_id"]
    assert "HTTPValidationError" not in schemas  # FastAPI's {"detail": ...} is never answered
    for method, path, operation in _operations(open_doc):
        if required_scope(method.upper(), path) is None:
            continue  # health checks answer their status (503 loading), not an error
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and status != "415":
                assert _refs(response) & ERROR_BODIES, (operation["operationId"], status)


def test_security_follows_the_servers_token_rule(
    open_doc: dict[str, Any], auth_doc: dict[str, Any]
) -> None:
    for doc in (open_doc, auth_doc):
        scheme = doc["components"]["securitySchemes"][SECURITY_SCHEME]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in _operations(auth_doc):
        scope = required_scope(method.upper(), path)
        if scope is None:  # health checks stay open
            assert operation["security"] == []
            assert "401" not in operation["responses"]
        else:
            assert operation["security"] == [{SECURITY_SCHEME: []}]
            assert operation["x-shipyard-scope"] == scope
            assert {"401", "403"} <= set(operation["responses"])
    assert auth_doc["paths"]["/invocations"]["post"]["x-shipyard-scope"] == "predict"
    assert auth_doc["paths"]["/metrics"]["get"]["x-shipyard-scope"] == "read"
    for _, _, operation in _operations(open_doc):  # without auth no route asks for a token
        assert operation["security"] == []
        assert "401" not in operation["responses"]


def test_media_types_are_what_the_routes_send(open_doc: dict[str, Any]) -> None:
    paths = open_doc["paths"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE_LATEST]
    assert CONTENT_TYPE_LATEST.startswith("text/plain; version=")
    for path in ("/ping", "/health", "/version"):  # MLflow's text bodies, labelled JSON
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert content["application/json"] == {}  # the label: no JSON schema for a text body
        assert content["text/plain"]["schema"]["type"] == "string"
    rows = paths["/v1/datasets/{name}/versions/{version}/rows"]["get"]["responses"]["200"]
    assert {"text/csv", "application/vnd.apache.parquet"} <= set(rows["content"])


def test_every_route_is_documented(served_project: Project) -> None:
    app = create_app(served_project.registry, ["churn@production"])
    doc = app.openapi()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods:
                assert method.lower() in doc["paths"][route.path_format], route.path


@pytest.mark.anyio
async def test_the_server_serves_the_completed_document(served_project: Project) -> None:
    app = create_app(served_project.registry, ["churn@production"])
    async with serving(app) as client:
        answer = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert answer.status_code == 200
    served = answer.json()
    assert "requestBody" in served["paths"]["/invocations"]["post"]
    assert served == app.openapi()
    assert docs.status_code == 200


@pytest.mark.anyio
async def test_mlflows_text_bodies_are_documented_as_the_text_they_are(
    served_project: Project,
) -> None:
    """/ping, /health and /version answer text labelled application/json (as MLflow's scoring
    server does): the document lists the label without a schema and describes the text."""
    app = create_app(served_project.registry, ["churn@production"])
    doc = app.openapi()
    async with serving(app) as client:
        for path in ("/ping", "/health", "/version"):
            answer = await client.get(path)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/json"  # MLflow's label
            with pytest.raises(json.JSONDecodeError, match=r"Expecting value|Extra data"):
                json.loads(answer.text)  # ... on a body that is not JSON
            documented = doc["paths"][path]["get"]["responses"]["200"]
            assert "not JSON" in documented["description"]
            assert "schema" not in documented["content"]["application/json"]
            jsonschema.validate(answer.text, documented["content"]["text/plain"]["schema"])
