"""Benchmark shipyard's Open Inference Protocol v2 over gRPC with tritonclient's asyncio client.

Run from the repository root (dev extras installed)::

    .venv/bin/python bench/grpc_bench.py                      # ~2 minutes, shipyard and MLServer
    .venv/bin/python bench/grpc_bench.py --streams 1 8 64 --duration 10 --rows 1 --client stub

What it does, all on 127.0.0.1 and bounded in time, in a temporary folder removed at the end:

1. trains serve_bench.py's ``churn`` model (the project template's pipeline on a churn-like
   frame of 7 numeric and 4 text columns) and registers it in a shipyard project;
2. starts each target (``--targets``, both by default): ``shipyard`` is ``shipyard serve
   churn --grpc-port P --no-access-log``, one process, the prediction log on as by default;
   ``mlserver`` is Seldon MLServer 1.7 (``mlserver start`` from ``.venv-mlserver``, made by
   ``make .venv-mlserver/bin/python``; default settings, the sklearn runtime on a joblib
   file of the same model, the pandas codec asked for with ``content_type`` parameters as
   its documentation says). Each is checked before it is timed: shipyard's gRPC answer
   equals the model's own ``predict_proba``, MLServer's (which answers ``predict`` only, as
   in serve_bench.py) its ``predict``;
3. for each ``--streams`` N: N coroutines each send one ``ModelInfer`` (``--rows`` rows, one
   tensor per column: INT64 / FP64 / BYTES, raw contents as ``set_data_from_numpy`` makes
   them) and await the answer, again and again for ``--duration`` seconds, over
   ``--channels`` HTTP/2 connections;
4. prints req/s, p50 and p99 latency, errors, and the CPU (in cores) used meanwhile by the
   client (this process), by the server (its process group) and by other processes of the
   machine. The client must not be the bottleneck: with ``--client triton`` (the default,
   ``tritonclient.grpc.aio.InferenceServerClient.infer``, which builds each request anew)
   the table shows what it costs; ``--client stub`` sends one prepared request through
   tritonclient's generated stub, the cheapest client there is.

Another server speaking the protocol plugs in as one more entry of :data:`TARGETS`: a
context manager that starts it and yields a :class:`Target` (its address, model name,
process group, the tensors it wants and the parameters it needs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from serve_bench import (
    MLSERVER_VENV,
    free_port,
    group_cpu_seconds,
    server,
    train_churn,
    write_mlserver_models,
)
from shared_machine import busy_cpu_seconds, code_version, wait_for_idle
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import serialize_byte_tensor

#: (name, datatype, values) of each input tensor of one request
Tensors = list[tuple[str, str, np.ndarray]]


@dataclass(frozen=True)
class Target:
    """A running server speaking the Open Inference Protocol v2 over gRPC."""

    name: str
    address: str  # host:port
    model: str
    group: int  # its process group, whose CPU is measured
    tensors: Callable[[pd.DataFrame], Tensors]  # the rows as the tensors it takes
    output: str = "predict_proba"  # the output checked against the model's method of that name
    parameters: tuple[tuple[str, str], ...] = ()  # the request's string parameters
    text_parameters: tuple[tuple[str, str], ...] = ()  # each BYTES input's string parameters


@dataclass(frozen=True)
class Result:
    """One timed run against one target."""

    target: str
    streams: int
    rows: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cores: float
    server_cores: float
    other_cores: float


def column_tensors(rows: pd.DataFrame) -> Tensors:
    """One tensor per column: integers INT64, floats FP64, text BYTES."""
    made: Tensors = []
    for name in rows.columns:
        values = rows[name].to_numpy()
        if values.dtype.kind in "iu":
            made.append((name, "INT64", values.astype(np.int64)))
        elif values.dtype.kind == "f":
            made.append((name, "FP64", values.astype(np.float64)))
        else:
            made.append((name, "BYTES", rows[name].astype(str).to_numpy(object)))
    return made


@contextmanager
def shipyard_target(work: Path, model: Any, frame: pd.DataFrame) -> Iterator[Target]:
    """``shipyard serve churn --grpc-port P`` on a fresh project holding ``model``."""
    from shipyard import Project

    with Project.init(work / "project", name="grpc-bench") as project:
        project.registry.register("churn", model, input_example=frame.head(200), trust=True)
    bindir = Path(sys.executable).parent
    http, port = free_port(), free_port()
    command = [str(bindir / "shipyard"), "serve", "churn", "--port", str(http)]
    command += ["--grpc-port", str(port), "--no-access-log"]
    ready = f"http://127.0.0.1:{http}/health/ready"
    with server(command, ready, work / "project", work / "shipyard.log", bindir) as process:
        yield Target("shipyard", f"127.0.0.1:{port}", "churn", process.pid, column_tensors)


@contextmanager
def mlserver_target(work: Path, model: Any, frame: pd.DataFrame) -> Iterator[Target]:  # noqa: ARG001
    """MLServer serving the same model (a joblib file, its sklearn runtime), gRPC on."""
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        raise SystemExit(f"{mlserver} is missing: run `make {MLSERVER_VENV.name}/bin/python`")
    folder = work / "mlserver"
    folder.mkdir()
    http, port = free_port(), free_port()
    write_mlserver_models(folder, {"churn": model}, (http, port, free_port()))
    ready = f"http://127.0.0.1:{http}/v2/health/ready"
    command = [str(mlserver), "start", str(folder)]
    with server(command, ready, folder, work / "mlserver.log", mlserver.parent) as process:
        yield Target(
            "mlserver",
            f"127.0.0.1:{port}",
            "churn",
            process.pid,
            column_tensors,
            output="predict",
            parameters=(("content_type", "pd"),),
            text_parameters=(("content_type", "str"),),
        )


#: The servers this benchmark knows: name → (work folder, model, frame) → a running Target.
TARGETS: dict[str, Callable[[Path, Any, pd.DataFrame], AbstractContextManager[Target]]] = {
    "shipyard": shipyard_target,
    "mlserver": mlserver_target,
}


def inputs(target: Target, tensors: Tensors) -> list[triton.InferInput]:
    """tritonclient inputs, filled by ``set_data_from_numpy`` (raw contents)."""
    made = []
    for name, datatype, values in tensors:
        tensor = triton.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        if datatype == "BYTES":  # tritonclient has no public setter for an input's parameters
            for key, value in target.text_parameters:
                tensor._get_tensor().parameters[key].string_param = value
        made.append(tensor)
    return made


def prepared_request(target: Target, tensors: Tensors) -> service_pb2.ModelInferRequest:
    """The ModelInferRequest tritonclient makes of ``inputs(target, tensors)``, built once."""
    request = service_pb2.ModelInferRequest(model_name=target.model)
    for key, value in target.parameters:
        request.parameters[key].string_param = value
    for name, datatype, values in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=values.shape)
        if datatype == "BYTES":
            for key, value in target.text_parameters:
                tensor.parameters[key].string_param = value
            raw = serialize_byte_tensor(values).item() if values.size else b""
        else:
            raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
        request.raw_input_contents.append(raw)
    return request


def check(target: Target, model: Any, rows: pd.DataFrame) -> None:
    """The target answers what the model answers (probabilities within 1e-9)."""
    client = triton.InferenceServerClient(target.address)
    answer = client.infer(
        target.model, inputs(target, target.tensors(rows)), parameters=dict(target.parameters)
    )
    found = answer.as_numpy(target.output)
    expected = getattr(model, target.output)(rows)
    if found is None or found.size != expected.size:
        raise RuntimeError(f"{target.name} answered {found} for {len(rows)} rows")
    found = found.reshape(expected.shape)  # MLServer answers labels as a [rows, 1] tensor
    if found.dtype.kind in "fc":
        same = np.allclose(found, expected, rtol=1e-9)
    else:
        same = [str(v) for v in found.tolist()] == [str(v) for v in expected.tolist()]
    if not same:
        raise RuntimeError(f"{target.name} answered {found}, the model {expected}")


async def drive(target: Target, rows: pd.DataFrame, streams: int, args: Any) -> Result:
    """``streams`` concurrent request loops for ``args.duration`` seconds."""
    tensors = target.tensors(rows)
    channels = max(1, min(args.channels, streams))
    latencies: list[float] = []
    errors = 0
    if args.client == "triton":
        clients = [triton_aio.InferenceServerClient(target.address) for _ in range(channels)]
        prepared = inputs(target, tensors)
        parameters = dict(target.parameters) or None

        async def once(index: int) -> None:
            await clients[index % channels].infer(target.model, prepared, parameters=parameters)

        async def close() -> None:
            for client in clients:
                await client.close()
    else:
        pipes = [grpc.aio.insecure_channel(target.address) for _ in range(channels)]
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(pipe) for pipe in pipes]
        request = prepared_request(target, tensors)

        async def once(index: int) -> None:
            await stubs[index % channels].ModelInfer(request)

        async def close() -> None:
            for pipe in pipes:
                await pipe.close()

    async def loop(index: int, until: float) -> None:
        nonlocal errors
        while (started := time.perf_counter()) < until:
            try:
                await once(index)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    warm_until = time.perf_counter() + 1.0
    await asyncio.gather(*(loop(i, warm_until) for i in range(streams)))
    latencies.clear()
    errors = 0
    cpu, others, serving = time.process_time(), busy_cpu_seconds(), group_cpu_seconds(target.group)
    began = time.perf_counter()
    await asyncio.gather(*(loop(i, began + args.duration) for i in range(streams)))
    wall = time.perf_counter() - began
    client_cpu = time.process_time() - cpu
    server_cpu = group_cpu_seconds(target.group) - serving
    machine = busy_cpu_seconds() - others
    await close()
    ordered = sorted(latencies) or [float("nan")]
    return Result(
        target.name,
        streams,
        len(rows),
        len(latencies) / wall,
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        errors,
        client_cpu / wall,
        server_cpu / wall,
        max(0.0, machine - client_cpu - server_cpu) / wall,
    )


def report(results: Sequence[Result]) -> None:
    """One line per run, with shipyard's req/s against MLServer's at the same stream count."""
    peer = {r.streams: r for r in results if r.target == "mlserver"}
    print(
        f"\n{'target':<10} {'streams':>7} {'rows':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'vs mlserver':>11} {'client':>7} {'server':>7} {'others':>7}"
        "   (CPU in cores)"
    )
    for r in results:
        other = peer.get(r.streams)
        versus = f"{r.rps / other.rps:.1f}x" if other and r.target != "mlserver" else ""
        print(
            f"{r.target:<10} {r.streams:>7} {r.rows:>4} {r.rps:>9.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>6} {versus:>11} {r.client_cores:>7.2f} "
            f"{r.server_cores:>7.2f} {r.other_cores:>7.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every target at every stream count and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--channels", type=int, default=1, help="HTTP/2 connections")
    parser.add_argument("--client", choices=("triton", "stub"), default="triton")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for other processes to use "
        "< 0.3 cores (0: do not wait)",
    )
    args = parser.parse_args(argv)
    print(f"code: {code_version()}")
    model, frame = train_churn()
    rows = frame.iloc[: args.rows]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-grpc-bench-") as tmp:
        for name in args.targets:
            work = Path(tmp) / name
            work.mkdir()
            print(f"{name}: starting ...", flush=True)
            with TARGETS[name](work, model, frame) as target:
                check(target, model, frame.iloc[:5])
                for streams in args.streams:
                    if args.idle_wait > 0:
                        wait_for_idle(args.idle_wait)
                    result = asyncio.run(drive(target, rows, streams, args))
                    print(f"  {streams} streams: {result.rps:.0f} req/s", flush=True)
                    results.append(result)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
