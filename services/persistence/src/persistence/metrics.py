"""Persistence's Prometheus metrics, served on `TOKENWIRE_METRICS_PORT`."""

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class PersistenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tokenwire_persistence_events_total", "Events recorded, by type", ["type"], registry=r
        )
        self.lag = Histogram(
            "tokenwire_persistence_lag_seconds",
            "From an event's creation to its commit in SQL",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.db_failures = Counter(
            "tokenwire_persistence_db_failures_total",
            "Batches naked because the database failed",
            registry=r,
        )
        self.webhook_failures = Counter(
            "tokenwire_persistence_webhook_failures_total",
            "Usage webhook deliveries that failed (and will retry)",
            registry=r,
        )

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
