"""Benchmark shipyard's Open Inference Protocol v2 over gRPC with tritonclient's asyncio client.

Run from the repository root (dev extras installed)::

    .venv/bin/python bench/grpc_bench.py                      # ~1 minute
    .venv/bin/python bench/grpc_bench.py --streams 1 8 64 --duration 10 --rows 1 --client stub

What it does, all on 127.0.0.1 and bounded in time, in a temporary folder removed at the end:

1. trains serve_bench.py's ``churn`` model (the project template's pipeline on a churn-like
   frame of 7 numeric and 4 text columns) and registers it in a shipyard project;
2. starts each target (``--targets``; today ``shipyard``: ``shipyard serve churn
   --grpc-port P --no-access-log``, one process, the prediction log on as by default) and
   checks that its gRPC answer equals the model's own ``predict_proba``;
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

Another server speaking the protocol (MLServer, being measured separately) plugs in as one
more entry of :data:`TARGETS`: a context manager that starts it and yields a
:class:`Target` (its address, model name, process group, and the tensors it wants).
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
from serve_bench import free_port, group_cpu_seconds, server, train_churn
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


#: The servers this benchmark knows: name → (work folder, model, frame) → a running Target.
TARGETS: dict[str, Callable[[Path, Any, pd.DataFrame], AbstractContextManager[Target]]] = {
    "shipyard": shipyard_target,
}


def inputs(tensors: Tensors) -> list[triton.InferInput]:
    """tritonclient inputs, filled by ``set_data_from_numpy`` (raw contents)."""
    made = []
    for name, datatype, values in tensors:
        tensor = triton.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        made.append(tensor)
    return made


def prepared_request(model: str, tensors: Tensors) -> service_pb2.ModelInferRequest:
    """The ModelInferRequest tritonclient makes of ``inputs(tensors)``, built once."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, datatype, values in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=values.shape)
        if datatype == "BYTES":
            raw = serialize_byte_tensor(values).item() if values.size else b""
        else:
            raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
        request.raw_input_contents.append(raw)
    return request


def check(target: Target, model: Any, rows: pd.DataFrame) -> None:
    """The target answers what the model answers (probabilities within 1e-9)."""
    client = triton.InferenceServerClient(target.address)
    answer = client.infer(target.model, inputs(target.tensors(rows)))
    proba = answer.as_numpy("predict_proba")
    if proba is None or not np.allclose(proba, model.predict_proba(rows), rtol=1e-9):
        raise RuntimeError(f"{target.name} answered {proba} for {len(rows)} rows")


async def drive(target: Target, rows: pd.DataFrame, streams: int, args: Any) -> Result:
    """``streams`` concurrent request loops for ``args.duration`` seconds."""
    tensors = target.tensors(rows)
    channels = max(1, min(args.channels, streams))
    latencies: list[float] = []
    errors = 0
    if args.client == "triton":
        clients = [triton_aio.InferenceServerClient(target.address) for _ in range(channels)]
        prepared = inputs(tensors)

        async def once(index: int) -> None:
            await clients[index % channels].infer(target.model, prepared)

        async def close() -> None:
            for client in clients:
                await client.close()
    else:
        pipes = [grpc.aio.insecure_channel(target.address) for _ in range(channels)]
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(pipe) for pipe in pipes]
        request = prepared_request(target.model, tensors)

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
    """One line per run."""
    print(
        f"\n{'target':<10} {'streams':>7} {'rows':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'client':>7} {'server':>7} {'others':>7}   (CPU in cores)"
    )
    for r in results:
        print(
            f"{r.target:<10} {r.streams:>7} {r.rows:>4} {r.rps:>9.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>6} {r.client_cores:>7.2f} {r.server_cores:>7.2f} "
            f"{r.other_cores:>7.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every target at every stream count and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--channels", type=int, default=1, help="HTTP/2 connections")
    parser.add_argument("--client", choices=("triton", "stub"), default="triton")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=["shipyard"])
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
