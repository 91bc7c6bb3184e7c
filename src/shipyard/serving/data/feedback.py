"""``POST /v1/feedback``: ground truth for predictions, sent to the model server.

::

    POST /v1/feedback
    {"model": "churn",
     "labels": [{"request_id": "4b1f…", "row": 0, "label": 1},    # an online prediction
                {"key": "C-17", "label": "yes"}]}                 # a batch prediction
    → 200 {"model": "churn", "accepted": 2}

An online prediction is named by the ``X-Request-ID`` its answer carried (the server's
``request_id``, also in the native answer's body) and the row of the request (from 0); a
batch prediction by its key value (the job's first key column, or ``row_id``). The same
label sent again is harmless; a different one for a labelled prediction is refused (409,
nothing stored) unless the request says ``?replace=true``: labels are never overwritten
silently. A token limited to some models (``shipyard tokens create --model``) labels those
only (403). The labels are stored in the
metadata database (:class:`~shipyard.datasets.feedback.FeedbackStore`) in one transaction,
all or none. The body is read raw and parsed as the prediction routes parse theirs: a body
above ``[serving.limits] thread_parse_bytes`` in a worker thread, so a big upload of labels
never holds the event loop (:func:`~shipyard.serving.limits.parse_off_loop`).

Errors come in the server's error body, ``{"error", "type", "request_id"}``: 400 for a
body or an entry that is wrong (the message names the entry, e.g. ``labels[2].row``), 404
for a model the server's registry does not have. With auth on, the route needs the
``predict`` scope: whoever may ask for predictions may send their ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.datasets.feedback import (
    MAX_KEY,
    MAX_REQUEST_ID,
    FeedbackStore,
    Label,
    check_model_name,
)
from shipyard.registry import Registry
from shipyard.serving.auth import model_refusal
from shipyard.serving.base import ModelLookup
from shipyard.serving.http import json_response
from shipyard.serving.limits import parse_off_loop
from shipyard.serving.openapi import COMPONENTS_KEY
from shipyard.serving.openapi_schemas import REF
from shipyard.serving.state import server_state
from shipyard.store import Database

#: Labels one request may carry; send more in several requests (or a file with the CLI).
MAX_LABELS = 10_000
#: The largest row number of a request (the ``feedback.row`` column is a 32-bit integer).
MAX_ROW = 2**31 - 1
_FIELDS = "label, request_id, row and key"
_SHAPE = (
    'send {"model": NAME, "labels": [{"request_id": ID, "row": N, "label": VALUE} or '
    '{"key": KEY, "label": VALUE}, ...]}'
)


class LabelEntry(BaseModel):
    """One label: the true value of an online prediction (request_id, row) or a batch one (key)."""

    model_config = ConfigDict(extra="forbid")

    label: Annotated[
        Any,
        Field(
            description="The true value: a class label, number or boolean (not null).",
            json_schema_extra={"type": ["string", "number", "integer", "boolean"]},
        ),
    ]
    request_id: Annotated[
        str,
        Field(
            max_length=MAX_REQUEST_ID,
            description="An online prediction: the X-Request-ID header its answer carried.",
        ),
    ] = ""
    row: Annotated[
        int,
        Field(ge=0, le=MAX_ROW, strict=True, description="Which row of that request, from 0."),
    ] = 0
    key: Annotated[
        str,
        Field(
            max_length=MAX_KEY,
            description="A batch prediction: its key value (first key column, or row_id).",
        ),
    ] = ""


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(description="The registered model's name, e.g. churn.")]
    labels: Annotated[
        list[LabelEntry], Field(max_length=MAX_LABELS, description="The labels to store.")
    ]


class FeedbackAnswer(BaseModel):
    """The answer of ``POST /v1/feedback``."""

    model: str
    accepted: Annotated[int, Field(description="Predictions labelled (distinct).")]


def _where(loc: Sequence[Any]) -> str:
    """A pydantic error location as ``labels[2].row`` (without the leading ``body``)."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe_errors(errors: Sequence[Any]) -> str:
    """The first validation error of a feedback body as one message that says how to fix it."""
    error = errors[0] if errors else {}
    kind, where = error.get("type", ""), _where(error.get("loc", ()))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {error.get('msg', '')}; {_SHAPE}"
    if not where:
        if kind == "missing":
            return f"the request body is empty; {_SHAPE}"
        return f"the request body must be a JSON object; {_SHAPE}"
    if kind == "missing":
        message = f"{where} is required"
    elif kind == "extra_forbidden":
        known = _FIELDS if where.startswith("labels[") else "model and labels"
        message = f"{where} is not a field of the feedback body (the fields are {known})"
    elif kind == "too_long" and where == "labels":
        message = (
            f"labels holds more than {MAX_LABELS} entries; send them in several requests, "
            "or store a file of labels with 'shipyard feedback add'"
        )
    else:
        seen = repr(error.get("input"))
        seen = seen if len(seen) <= 60 else seen[:57] + "..."
        message = f"{where}: {error.get('msg', 'invalid').lower()} (got {seen})"
    return f"{message}{more}; {_SHAPE}"


class _ErrorBodies(APIRoute):
    """Answers a body that fails validation with the server's error body (400), not FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, with validation errors turned into :class:`InvalidArgumentError`."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise InvalidArgumentError(describe_errors(exc.errors())) from exc

        return route


router = APIRouter(prefix="/v1", tags=["monitoring"], route_class=_ErrorBodies)


def _database(request: Request) -> Database:
    return server_state(request.app).datasets.database


def check_registered(models: ModelLookup, registry: Registry, name: str) -> None:
    """Nothing when ``name`` is served here or registered in the registry, else NotFoundError."""
    check_model_name(name)
    if any(m.name == name for m in models.served()):
        return
    try:
        registry.list_versions(name, include_archived=True)
    except NotFoundError as exc:
        raise NotFoundError(
            f"no registered model named {name!r}: feedback is kept for the models of this "
            f"server's registry (it serves {models.describe_served()}); check the name, or "
            "register the model first"
        ) from exc


def _store(request: Request, body: FeedbackRequest, replace: bool) -> int:
    state = server_state(request.app)
    refusal = model_refusal(request.scope.get("state", {}).get("token"), body.model)
    if refusal is not None:
        raise refusal
    check_registered(state.models, state.registry, body.model)
    labels = [
        Label(label=entry.label, request_id=entry.request_id, row=entry.row, key=entry.key)
        for entry in body.labels
    ]
    return FeedbackStore(_database(request)).add(body.model, labels, replace=replace)


def parse_feedback(body: bytes) -> FeedbackRequest:
    """The feedback body parsed and checked, or :class:`InvalidArgumentError` saying what to fix
    (run off the event loop for a big body: :func:`~shipyard.serving.limits.parse_off_loop`)."""
    if not body.strip():
        raise InvalidArgumentError(f"the request body is empty; {_SHAPE}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"the request body is not UTF-8 text (byte {exc.start}); send JSON in UTF-8; {_SHAPE}"
        ) from exc
    try:  # pydantic's JSON parser: integers of any size stay integers (a row of 10**30 is
        # refused by its bound, not read as a float), nesting is bounded
        payload = from_json(text)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise InvalidArgumentError(
                f"the request body is JSON nested too deeply ({exc}); {_SHAPE}"
            ) from exc
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}; {_SHAPE}") from exc
    try:
        return FeedbackRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidArgumentError(describe_errors(exc.errors())) from exc


def _json_content(content_type: str | None) -> bool:
    """Whether a body of ``content_type`` is read as JSON (none given, or ``…/json``,
    ``…+json``: FastAPI's rule)."""
    if not content_type:
        return True
    mime = content_type.partition(";")[0].strip().lower()
    return mime.startswith("application/") and mime.endswith(("/json", "+json"))


#: The body is read raw (and parsed off the event loop when big), so FastAPI does not see it:
#: the document names its schema here (:data:`~shipyard.serving.openapi.COMPONENTS_KEY`).
_BODY_SCHEMA = FeedbackRequest.model_json_schema(ref_template=f"{REF}{{model}}")
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"{REF}FeedbackRequest"}}},
    },
    COMPONENTS_KEY: {
        "FeedbackRequest": {k: v for k, v in _BODY_SCHEMA.items() if k != "$defs"},
        **_BODY_SCHEMA.get("$defs", {}),
    },
}


@router.post("/feedback", responses={200: {"model": FeedbackAnswer}}, openapi_extra=_OPENAPI)
async def post_feedback(request: Request, replace: bool = False) -> Response:
    """Store the true values of online (request id, row) or batch (key) predictions.

    A different label for a prediction that has one is refused (409) unless ``replace=true``.
    """
    content_type = request.headers.get("content-type")
    if not _json_content(content_type):
        raise InvalidArgumentError(
            f"the request body must be a JSON object sent as application/json, not "
            f"{content_type!r}; {_SHAPE}"
        )
    raw = await request.body()
    body = await parse_off_loop(raw, parse_feedback, server_state(request.app).settings.limits)
    accepted = await run_in_threadpool(_store, request, body, replace)
    return json_response({"model": body.model, "accepted": accepted})
