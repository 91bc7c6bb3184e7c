"""Prometheus metrics of one server, in its own registry (no process-global state).

Names follow Prometheus conventions with the ``shipyard_`` prefix; labels are ``model``
and ``version`` (never a request id), plus ``protocol`` and ``status`` on requests:

- ``shipyard_requests_total{model,version,protocol,status}`` counter
- ``shipyard_request_duration_seconds{model,version,protocol}`` histogram
- ``shipyard_batch_size{model,version}`` histogram of rows per ``predict`` call
- ``shipyard_inflight_requests{model,version}`` gauge of predictions being computed
- ``shipyard_model_errors_total{model,version}`` counter of failed ``predict`` batches
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """The metrics one app records; ``render()`` gives the text exposition format."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "shipyard_requests_total",
            "Prediction requests answered, by model, version, protocol and HTTP status.",
            ["model", "version", "protocol", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "shipyard_request_duration_seconds",
            "Time from the request's arrival to the end of its answer.",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "shipyard_batch_size",
            "Rows in each predict call after micro-batching.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "shipyard_inflight_requests",
            "Requests waiting for or running a prediction.",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_errors = Counter(
            "shipyard_model_errors_total",
            "Predict batches that raised an exception.",
            ["model", "version"],
            registry=self.registry,
        )

    def observe_request(
        self, model: str, version: str, protocol: str, status: int, seconds: float
    ) -> None:
        """Count one answered prediction request and its duration."""
        key = (model, version, protocol, status)
        children = self._children.get(key)
        if children is None:  # label lookups once per label set, not once per request
            children = (
                self.requests.labels(model, version, protocol, str(status)),
                self.duration.labels(model, version, protocol),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
