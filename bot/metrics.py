"""Prometheus metrics of the service (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "kaspro_messages_in_total", "Inbound messages accepted", ["channel"], registry=r
        )
        self.duplicates = Counter(
            "kaspro_messages_duplicate_total",
            "Inbound deliveries dropped as already seen",
            ["channel"],
            registry=r,
        )
        self.messages_out = Counter(
            "kaspro_messages_out_total", "Messages delivered", ["channel"], registry=r
        )
        self.delivery_failures = Counter(
            "kaspro_delivery_failures_total",
            "Deliveries that failed (retried later)",
            ["channel"],
            registry=r,
        )
        self.flows = Counter(
            "kaspro_flows_total", "Flows that ended", ["flow", "outcome"], registry=r
        )
        self.errors = Counter("kaspro_errors_total", "Unexpected errors", ["where"], registry=r)
        self.latency = Histogram(
            "kaspro_message_seconds",
            "Time to process one inbound message",
            ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.outbox_lag = Histogram(
            "kaspro_outbox_lag_seconds",
            "From reply committed to reply delivered",
            ["channel"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            registry=r,
        )
        self.inbox_backlog = Gauge(
            "kaspro_inbox_backlog", "Accepted messages not yet applied", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
