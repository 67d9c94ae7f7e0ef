"""The gateway's Prometheus metrics (`/metrics`), in a registry of its own per app."""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "tokenwire_gateway_connections", "Open WebSocket connections", registry=r
        )
        self.sessions = Gauge(
            "tokenwire_gateway_sessions", "Sessions this gateway holds", registry=r
        )
        self.frames_in = Counter(
            "tokenwire_gateway_frames_in_total",
            "Client frames received, by type (or refusal code)",
            ["type"],
            registry=r,
        )
        self.frames_out = Counter(
            "tokenwire_gateway_frames_out_total", "Frames sent to clients", registry=r
        )
        self.merged = Counter(
            "tokenwire_gateway_merged_deltas_total",
            "Token deltas sent merged into another frame (backpressure)",
            registry=r,
        )
        self.slow_closes = Counter(
            "tokenwire_gateway_slow_client_closes_total",
            "Connections closed 1013 for falling too far behind",
            registry=r,
        )
        self.resumes = Counter(
            "tokenwire_gateway_resumes_total",
            "Connections resuming with last_seq, by whether complete",
            ["recovered"],
            registry=r,
        )
        self.refusals = Counter(
            "tokenwire_gateway_refusals_total",
            "Messages or connections refused, by error code",
            ["code"],
            registry=r,
        )
        self.ttft = Histogram(
            "tokenwire_gateway_ttft_seconds",
            "From a user message stored to its reply's first token, as forwarded by this gateway",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tokenwire_gateway_tokens_total",
            "Token deltas forwarded (once per gateway, before fan-out)",
            registry=r,
        )
        self.replies = Counter(
            "tokenwire_gateway_replies_total",
            "Replies that ended, by finish reason or error",
            ["outcome"],
            registry=r,
        )
        self._broker_view(r)

    def _broker_view(self, r: CollectorRegistry) -> None:
        """What `broker_view` reads from nats-server: the queue, persistence's lag, the stream."""
        self.queue_pending = Gauge(
            "tokenwire_broker_queue_pending",
            "User messages waiting for a worker, by model (its consumer: llm-workers[-<id>])",
            ["model"],
            registry=r,
        )
        self.queue_ack_pending = Gauge(
            "tokenwire_broker_queue_ack_pending",
            "User messages held by workers, not yet acked, by model",
            ["model"],
            registry=r,
        )
        self.redelivered = Gauge(
            "tokenwire_broker_queue_redelivered",
            "User messages delivered more than once, now pending, by model",
            ["model"],
            registry=r,
        )
        self.waiting_pulls = Gauge(
            "tokenwire_broker_queue_waiting_pulls",
            "Pull requests waiting: idle worker capacity, by model",
            ["model"],
            registry=r,
        )
        self.persistence_pending = Gauge(
            "tokenwire_broker_persistence_pending",
            "Events persistence has not yet recorded",
            registry=r,
        )
        self.workers_connected = Gauge(
            "tokenwire_broker_workers_connected",
            "Worker connections to nats-server (from its monitoring endpoint)",
            registry=r,
        )
        self.stream_messages = Gauge(
            "tokenwire_broker_stream_messages", "Messages in the CHAT stream", registry=r
        )
        self.stream_bytes = Gauge(
            "tokenwire_broker_stream_bytes", "Bytes in the CHAT stream", registry=r
        )

    def track(self, connections: Callable[[], float], sessions: Callable[[], float]) -> None:
        self.connections.set_function(connections)
        self.sessions.set_function(sessions)
