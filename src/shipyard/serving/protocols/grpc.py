"""The Open Inference Protocol v2 over gRPC (KServe's ``grpc_predict_v2.proto``) over the core.

:class:`GrpcServer` serves ``inference.GRPCInferenceService`` (``ServerLive``,
``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``, ``ModelInfer``) with
``grpc.aio`` in the HTTP server's event loop: the app's lifespan starts and stops it
(``ServeSettings.grpc_port``), so both transports share one set of models and
micro-batchers, one metrics registry, one token check and one prediction log. Tensors go
through the HTTP route's codec (:mod:`shipyard.serving.protocols.v2_codec`): the same
checks, and the same messages for bad input.

- Inputs: ``raw_input_contents`` (one entry per input, what ``tritonclient.grpc``'s
  ``set_data_from_numpy`` sends) or each input's typed ``contents``; one tensor per
  signature column, or one ``[rows, columns]`` tensor for an all-numeric model.
- Outputs ``predict`` and, for classifiers, ``predict_proba``: as ``raw_output_contents``
  when the request sent raw inputs (or sets the parameter ``binary_data_output``), else as
  typed ``contents`` (KServe's rule; tritonclient reads only raw outputs and always sends
  raw inputs).
- Errors are status codes with a message, from the HTTP status of the same failure:
  INVALID_ARGUMENT (bad input), NOT_FOUND (unknown model or version), UNAVAILABLE (no model
  loaded), UNAUTHENTICATED / PERMISSION_DENIED (tokens), INTERNAL (a bug). The port opens
  once every model is warm (before that, clients see UNAVAILABLE from their own channel).
- Limits: the HTTP routes' ``[serving.limits]`` (:mod:`shipyard.serving.limits`). A request
  message above ``max_body_bytes`` is refused by gRPC itself before it is read
  (RESOURCE_EXHAUSTED, "Received message larger than max (SIZE vs. LIMIT)": raise it with
  ``shipyard serve --max-body-bytes``); more inputs than ``max_columns`` before they are
  decoded, then too many rows, a long column name or text value as the HTTP route refuses
  them: RESOURCE_EXHAUSTED with the same message, naming the limit and how to raise it.
- Auth: the metadata ``authorization: Bearer <token>``, with the HTTP routes' rules:
  ``ModelInfer`` needs the ``predict`` scope, metadata and ``ModelReady`` ``read``, the
  health rpcs nothing.
- ``ModelInfer`` is counted in ``shipyard_requests_total{protocol="grpc"}`` (``status`` is
  the HTTP status of the same answer: 200, 422...), timed, and written to the prediction log
  under the metadata ``x-request-id``, the request's ``id`` or a new id; every call writes an
  access-log line.

The protobuf modules beside this one are generated from ``grpc_predict_v2.proto``. They
register the protocol's messages (``inference.*``) in protobuf's process-wide pool, as
tritonclient, KServe and MLServer do with theirs, so a process importing one of those cannot
also serve gRPC here (``create_app`` says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc
import numpy as np
import orjson

from shipyard.core.exceptions import (
    ConfigError,
    InvalidArgumentError,
    NotFoundError,
    SchemaError,
    ShipyardError,
)
from shipyard.core.schema import Signature
from shipyard.registry.tokens import ActiveToken
from shipyard.serving.auth import model_refusal
from shipyard.serving.base import ModelLookup, Prediction, ServedModel
from shipyard.serving.http import access_logger, new_request_id
from shipyard.serving.limits import check_width, limited
from shipyard.serving.protocols import grpc_predict_v2_pb2 as pb
from shipyard.serving.protocols import grpc_predict_v2_pb2_grpc as pb_grpc
from shipyard.serving.protocols.v2_codec import (
    columns_from_tensors,
    decode_tensor,
    model_metadata,
    prediction_outputs,
    requested_outputs,
    tensor_bytes,
)
from shipyard.serving.state import ServerState

__all__ = ["MAX_MESSAGE_BYTES", "GrpcServer", "InferenceService"]

logger = logging.getLogger(__name__)

#: The largest answer sent (gRPC's default of 4 MiB is a few thousand rows); requests are
#: bounded by ``[serving.limits] max_body_bytes``, as over HTTP.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Seconds in-flight calls get to finish when the server stops.
DEFAULT_GRACE = 10.0
_SERVICE = "/inference.GRPCInferenceService/"
_MAX_REQUEST_ID = 128

#: The gRPC status of each HTTP status a :class:`ShipyardError` carries (others: INTERNAL).
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# The typed field of InferTensorContents holding each datatype (FP16 and BF16 widened).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents",
    "BF16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELDS = tuple(dict.fromkeys(_CONTENTS.values()))

_Response = TypeVar("_Response")


class _Refused(ShipyardError):
    """A call refused before it reached a model (auth, readiness): its own HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status


class _Call:
    """What one call's access-log line and metrics need, filled in as it goes."""

    __slots__ = ("model", "request_id", "token", "version")

    def __init__(self) -> None:
        self.model = ""
        self.version = ""
        self.request_id = ""
        self.token: ActiveToken | None = None

    def serve(self, model: ServedModel) -> None:
        self.model, self.version = model.name, str(model.version)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The ``GRPCInferenceService`` rpcs over one server's state."""

    def __init__(
        self,
        state: ServerState,
        server_name: str,
        server_version: str,
        client_request_id: ContextVar[str | None] | None = None,
    ) -> None:
        self.state = state
        self.models: ModelLookup = state.models
        self.server_name = server_name
        self.server_version = server_version
        # Canary splits read the client's request id from here (the HTTP routes' variable).
        self.client_request_id = client_request_id

    # -- the rpcs -------------------------------------------------------------------------

    async def ServerLive(
        self, _request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        """The process answers."""

        async def work(_call: _Call) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._answer(context, "ServerLive", None, work)

    async def ServerReady(
        self, _request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Every model is loaded and warmed up."""

        async def work(_call: _Call) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.models.ready())

        return await self._answer(context, "ServerReady", None, work)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """The model (version) is served; NOT_FOUND otherwise."""

        async def work(call: _Call) -> pb.ModelReadyResponse:
            call.serve(self._find(request.name, request.version))
            return pb.ModelReadyResponse(ready=True)

        return await self._answer(context, "ModelReady", "read", work)

    async def ServerMetadata(
        self, _request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """Server name and version; no extension (HTTP's binary tensors are core here)."""

        async def work(_call: _Call) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name=self.server_name, version=self.server_version)

        return await self._answer(context, "ServerMetadata", "read", work)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """Versions, platform, input and output tensors (as ``GET /v2/models/{name}``)."""

        async def work(call: _Call) -> pb.ModelMetadataResponse:
            model = self._find(request.name, request.version)
            call.serve(model)
            versions = sorted(m.version for m in self.models.served() if m.name == model.name)
            meta = model_metadata(model, versions or [model.version])
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
            )

        return await self._answer(context, "ModelMetadata", "read", work)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """Predict: tensors in, ``predict`` (and ``predict_proba``) out."""
        started = time.perf_counter()

        async def work(call: _Call) -> pb.ModelInferResponse:
            client_id = _metadata(context, "x-request-id") or request.id or None
            call.request_id = _clean_id(client_id)
            if self.client_request_id is not None:
                self.client_request_id.set(client_id)
            model = self._find(request.model_name, request.model_version)
            if not request.model_version:  # an unpinned request may go to the model's canary
                model = self.models.route(model)
            call.serve(model)
            refusal = model_refusal(call.token, model.name)
            if refusal is not None:
                raise refusal
            # the HTTP routes' limits: columns before the tensors are decoded, then rows,
            # names and text (text only when the message is long enough to hold a long one)
            limits = self.state.settings.limits
            check_width(len(request.inputs), limits)
            thorough = request.ByteSize() > limits.max_string_length
            checked = limited(model, limits, thorough=thorough)
            columns = checked.validate(decode_columns(request, model.signature))
            prediction = await model.predict(columns)
            response = encode_response(
                model, request.id or call.request_id, prediction, request, _wants_raw(request)
            )
            log = self.state.prediction_log
            if log is not None:
                latency = time.perf_counter() - started
                log.record(model.name, model.version, call.request_id, latency, columns, prediction)
            return response

        return await self._answer(context, "ModelInfer", "predict", work, started)

    # -- plumbing -------------------------------------------------------------------------

    async def _answer(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        scope: str | None,
        work: Callable[[_Call], Awaitable[_Response]],
        started: float | None = None,
    ) -> _Response:
        """Run ``work`` after the token check; count, log, and turn errors into statuses."""
        started = time.perf_counter() if started is None else started
        call = _Call()
        status, message = 200, ""
        try:
            if scope is not None:
                call.token = self._authorize(context, scope)
            response = await work(call)
        except ShipyardError as exc:
            status, message = exc.status_code, exc.message
        except Exception as exc:  # the protocol's status, even for a bug
            logger.exception("gRPC %s on model %r failed", rpc, call.model or "?")
            status, message = 500, f"internal error: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        if rpc == "ModelInfer":
            self.state.metrics.observe_request(call.model, call.version, "grpc", status, seconds)
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(_access_line(rpc, status, seconds, call))
        if status != 200:  # abort raises: the call ends with this status and message
            await context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)
        return response

    def _authorize(self, context: grpc.aio.ServicerContext, scope: str) -> ActiveToken | None:
        auth = self.state.auth
        if auth is None:
            return None
        header = _metadata(context, "authorization")
        refusal, token = auth.identify(
            header.encode("latin-1") if header is not None else None, scope
        )
        if refusal is not None:
            raise _Refused(*refusal)
        return token

    def _find(self, name: str, version: str) -> ServedModel:
        """The model ``name`` (a version number as text, or empty for its default)."""
        number: int | None = None
        if version:
            try:
                number = int(version)
            except ValueError as exc:
                raise InvalidArgumentError(
                    f"model version {version!r} is not a number; send a version number, or "
                    "leave it empty for the version served by default"
                ) from exc
        try:
            return self.models.get(name, number)
        except NotFoundError as exc:
            if self.models.ready():
                raise
            raise _Refused(
                503,
                f"the server is still loading its models ({exc.message}); retry when "
                "ServerReady answers true",
            ) from exc


def decode_columns(
    request: pb.ModelInferRequest, signature: Signature | None
) -> dict[str, np.ndarray]:
    """A ``ModelInferRequest``'s input tensors as signature columns (see the v2 codec)."""
    inputs, raw = request.inputs, request.raw_input_contents
    if not inputs:
        raise InvalidArgumentError("the request has no inputs; send one tensor per column")
    if raw and len(raw) != len(inputs):
        raise InvalidArgumentError(
            f"raw_input_contents holds {len(raw)} entries but the request has {len(inputs)} "
            "inputs; send one entry per input, in the order of the inputs"
        )
    tensors: list[tuple[str, str, np.ndarray]] = []
    for index, tensor in enumerate(inputs):
        name, datatype = tensor.name, tensor.datatype
        if raw:
            if tensor.HasField("contents"):
                raise SchemaError(
                    f"input tensor {name!r} has both contents and raw_input_contents; send one",
                    column=name,
                )
            array = decode_tensor(name, datatype, tensor.shape, raw=raw[index])
        else:
            array = decode_tensor(name, datatype, tensor.shape, values=_values(tensor))
        tensors.append((name, datatype, array))
    return columns_from_tensors(tensors, signature)


def _values(tensor: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    """The elements of an input's typed contents, from the field its datatype names."""
    field = _CONTENTS.get(tensor.datatype)
    if field is None:  # the codec names the valid datatypes
        return []
    contents = tensor.contents
    values = list(getattr(contents, field))
    if not values:
        used = next((f for f in _FIELDS if f != field and len(getattr(contents, f))), None)
        if used is not None:
            raise SchemaError(
                f"input tensor {tensor.name!r} is {tensor.datatype} but its elements are in "
                f"contents.{used}; put them in contents.{field}",
                column=tensor.name,
            )
    if field == "bytes_contents":
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as exc:
            raise SchemaError(
                f"input tensor {tensor.name!r} has BYTES elements that are not UTF-8 ({exc})",
                column=tensor.name,
            ) from exc
    return values


def _wants_raw(request: pb.ModelInferRequest) -> bool:
    if request.raw_input_contents:
        return True
    flag = request.parameters.get("binary_data_output")
    return flag is not None and _parameter(flag) is True


def _parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice is not None else None


def encode_response(
    model: ServedModel,
    request_id: str,
    prediction: Prediction,
    request: pb.ModelInferRequest,
    raw: bool,
) -> pb.ModelInferResponse:
    """The ``ModelInferResponse``: the requested outputs (all when none), raw or typed."""
    wanted = requested_outputs(
        [
            {"name": o.name, "parameters": {k: _parameter(v) for k, v in o.parameters.items()}}
            for o in request.outputs
        ]
        if request.outputs
        else None
    )
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request_id
    )
    for output, array, datatype in prediction_outputs(prediction, wanted):
        tensor = response.outputs.add(name=output.name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(tensor_bytes(array, datatype))
            continue
        values = array.ravel().tolist()
        if datatype == "BYTES":
            values = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        getattr(tensor.contents, _CONTENTS[datatype]).extend(values)
    return response


def _clean_id(text: str | None) -> str:
    """The client's request id when printable and short enough, else a new one."""
    if text and len(text) <= _MAX_REQUEST_ID and text.isprintable():
        return text
    return new_request_id()


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _access_line(rpc: str, status: int, seconds: float, call: _Call) -> str:
    return orjson.dumps(
        {
            "method": "GRPC",
            "path": _SERVICE + rpc,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "model": call.model or None,
            "version": call.version or None,
            "request_id": call.request_id or None,
        }
    ).decode()


class GrpcServer:
    """The gRPC service of one app, started and stopped by its lifespan.

    ``reuse_port`` lets several processes listen on one port (SO_REUSEPORT: the kernel
    spreads connections over them); without it a port in use is an error.
    """

    def __init__(
        self,
        state: ServerState,
        host: str,
        port: int,
        *,
        server_name: str = "shipyard",
        server_version: str = "",
        reuse_port: bool = False,
        client_request_id: ContextVar[str | None] | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.service = InferenceService(state, server_name, server_version, client_request_id)
        #: the largest request message read: the HTTP routes' ``max_body_bytes``
        self.max_receive = state.settings.limits.max_body_bytes
        self.address = (
            f"[{host}]:{port}" if ":" in host and not host.startswith("[") else (f"{host}:{port}")
        )
        self.reuse_port = reuse_port
        self.grace = grace
        #: the port listened on once started (the one chosen when ``port`` is 0)
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        """Listen and serve (in the running event loop); the port listened on."""
        options: Sequence[tuple[str, Any]] = [
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ("grpc.max_receive_message_length", int(self.max_receive)),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        server = grpc.aio.server(options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.service, server
        )
        problem = (
            f"cannot listen for gRPC on {self.address}: the port is taken or the address is "
            "not this machine's; choose another --grpc-port (or [serving] grpc_port)"
        )
        try:
            port = int(server.add_insecure_port(self.address))
        except RuntimeError as exc:  # grpcio raises where older releases returned 0
            raise ConfigError(problem) from exc
        if not port:
            raise ConfigError(problem)
        await server.start()
        self._server, self.port = server, port
        return port

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish (up to ``grace`` seconds), stop."""
        if self._server is not None:
            await self._server.stop(self.grace)
            self._server = None
