"""Schemathesis against a real ``shipyard serve``: the OpenAPI document tells the truth.

Two servers on loopback serve the same project (``churn`` v1 as production and v2): one
without auth, one with ``--auth``. Every operation of the server's own ``/openapi.json`` is
fuzzed with every schemathesis check — no server error, every status, content type, header
and body as documented, auth enforced where the document says — without a token on the open
server, and with a token of each scope (read, predict, admin) on the protected one. The
number of examples per operation is small, so the file stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.test_grpc import Served, start_server

from shipyard import Project
from shipyard.registry.tokens import TokenStore

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
#: One worker runs every caller, so the two servers start once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fuzz")]
#: Who calls: the open server without a token, or the protected one with a token of a scope.
CALLERS = ("open", "read", "predict", "admin")
#: Requests per operation and caller (hypothesis shrinks a failure to its smallest case).
EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzzed_project(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Iterator[Project]:
    """churn v1 (production) and v2, a labelled online prediction, and a token of each scope."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("fuzz")
    with Project(settings=make_settings(root / "proj", f"sqlite:///{root / 'db'}")) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.promote("churn:1", to="production")
        yield project


@pytest.fixture(scope="module")
def tokens(fuzzed_project: Project) -> dict[str, str]:
    """A token of each scope, by scope."""
    store = TokenStore(fuzzed_project.registry.database)
    return {scope: store.create(f"fuzz-{scope}", [scope], "tester")[0] for scope in CALLERS[1:]}


@pytest.fixture(scope="module")
def servers(fuzzed_project: Project, tokens: dict[str, str]) -> Iterator[dict[str, Served]]:
    """The open server and the protected one (started after the tokens exist)."""
    assert tokens
    refs = ("churn@production", "churn:2")
    started = {"open": start_server(fuzzed_project, *refs)}
    try:
        started["auth"] = start_server(fuzzed_project, *refs, "--auth")
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module", params=CALLERS)
def caller(request: pytest.FixtureRequest) -> str:
    """Who calls (see :data:`CALLERS`)."""
    return str(request.param)


@pytest.fixture(scope="module")
def headers(caller: str, tokens: dict[str, str]) -> dict[str, str]:
    """The caller's Authorization header (none for the open server)."""
    return {} if caller == "open" else {"Authorization": f"Bearer {tokens[caller]}"}


#: The callers' tokens are sent by the test, so the fuzzer does not generate (or leave out)
#: the Authorization header itself; schemathesis's ignored_auth check still sends requests
#: without it (and with a bogus one) to every protected operation.
CONFIG = {"generation": {"with-security-parameters": False}}


@pytest.fixture(scope="module")
def api(caller: str, servers: dict[str, Served], tokens: dict[str, str]) -> Any:
    """The document the caller's server serves (read with the read token: the pages need it)."""
    config = schemathesis.Config.from_dict(CONFIG)
    if caller == "open":
        return schemathesis.openapi.from_url(f"{servers['open'].url}/openapi.json", config=config)
    reader = {"Authorization": f"Bearer {tokens['read']}"}
    url = f"{servers['auth'].url}/openapi.json"
    return schemathesis.openapi.from_url(url, headers=reader, config=config)


#: Path parameters naming what the servers serve, so the fuzzer reaches the models too.
SERVED = {"ref": "churn@production", "name": "churn", "version": "1", "alias": "production"}
_ROW = {"tenure": 12, "charges": 70.5, "plan": "basic"}
_V2 = {
    "inputs": [
        {"name": "tenure", "shape": [1], "datatype": "INT64", "data": [12]},
        {"name": "charges", "shape": [1], "datatype": "FP64", "data": [70.5]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
    ]
}
#: A body each body-taking operation accepts (media type, body), so answers with the
#: predictions are checked against the document too, not only the errors.
VALID: dict[str, list[tuple[str, Any]]] = {
    "/v1/models/{ref}/predict": [("application/json", [_ROW])],
    "/v1/models/{name}/versions/{version}/predict": [("application/json", {"records": [_ROW]})],
    "/v1/models/{name}/aliases/{alias}/predict": [
        ("application/json", {"columns": list(_ROW), "data": [list(_ROW.values())]})
    ],
    "/invocations": [
        ("application/json", {"dataframe_records": [_ROW]}),
        ("text/csv", "tenure,charges,plan\n12,70.5,basic\n"),
    ],
    "/v2/models/{name}/infer": [("application/json", _V2)],
    "/v2/models/{name}/versions/{version}/infer": [("application/json", _V2)],
    "/v1/feedback": [
        ("application/json", {"model": "churn", "labels": [{"key": "k", "label": 1}]})
    ],
}


def _strategies(operation: Any) -> st.SearchStrategy[Any]:
    """Valid and invalid requests for ``operation``, with random and with served names, and
    bodies the served model accepts."""
    choices = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    names = {p.name for p in operation.path_parameters}
    served = {name: SERVED[name] for name in names if name in SERVED}
    if served:
        choices.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=served))
    for media_type, body in VALID.get(operation.path, ()):
        choices.append(
            operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters=served, body=body, media_type=media_type
            )
        )
    return st.one_of(choices)


def _model_dependent(operation: Any) -> bool:
    """Whether a schema-valid request may rightly be refused, so positive_data_acceptance
    does not apply: a body whose validity depends on the served model's signature (the
    prediction routes) or on stored data (feedback), or an opaque cursor from a previous page."""
    return operation.method.upper() == "POST" or any(p.name == "cursor" for p in operation.query)


def _fuzz(operation: Any, headers: dict[str, str], statuses: dict[str, set[int]]) -> str | None:
    """Fuzz one operation; what failed (every distinct failure), or None."""
    excluded = [positive_data_acceptance] if _model_dependent(operation) else []

    @given(case=_strategies(operation))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        answer = case.call_and_validate(headers=headers, timeout=30, excluded_checks=excluded)
        statuses.setdefault(operation.path, set()).add(answer.status_code)

    try:
        fuzz()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup included
        return f"{operation.label}: {exc}"
    return None


def test_the_api_answers_as_documented(api: Any, caller: str, headers: dict[str, str]) -> None:
    """Every operation, fuzzed with every check: no failure anywhere (all are listed)."""
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 27
    statuses: dict[str, set[int]] = {}
    failures = [f for f in (_fuzz(op, headers, statuses) for op in operations) if f is not None]
    assert not failures, "\n\n".join(failures)
    if caller != "read":  # the valid bodies were scored, not only refused
        assert all(200 in statuses[path] for path in VALID), statuses
