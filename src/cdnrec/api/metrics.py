"""Prometheus metrics of the API, in a registry owned by one service instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    """Request counts by Action and Code, and latency by Action."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cdnrec_api_requests",
            "API requests answered, by Action and Code",
            ["action", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "cdnrec_api_request_seconds",
            "Time to answer an API request, by Action",
            ["action"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    def observe(self, action: str, code: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(action, str(code)).inc()
        self.latency.labels(action).observe(seconds)
