"""The Prometheus metrics of `jiyi serve` (GET /metrics): requests, latency, batches, queue.

Names: jiyi_requests_total{endpoint,method,status}, jiyi_request_duration_seconds{endpoint},
jiyi_batch_size, jiyi_batch_duration_seconds, jiyi_queue_depth, jiyi_requests_in_flight.
"""

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter


class Metrics:
    """Prometheus metrics in the app's own registry (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = PromCounter(
            "jiyi_requests", "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "jiyi_request_duration_seconds", "Request latency by endpoint", ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "jiyi_batch_size", "Texts per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "jiyi_batch_duration_seconds", "Seconds per forward pass",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("jiyi_queue_depth", "Texts waiting for the model", registry=r)
        self.in_flight = Gauge("jiyi_requests_in_flight", "Requests being served", registry=r)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
