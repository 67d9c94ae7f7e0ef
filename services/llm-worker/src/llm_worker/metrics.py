"""The worker's Prometheus metrics, served on `TOKENWIRE_METRICS_PORT`."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.events import ReplyEnd, ReplyError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge(
            "tokenwire_worker_active_replies", "Replies this worker holds", registry=r
        )
        self.upstream_limit = Gauge(
            "tokenwire_worker_upstream_limit",
            "Model calls this worker allows at once (halved on each 429, then grows back)",
            registry=r,
        )
        self.ttft = Histogram(
            "tokenwire_worker_upstream_ttft_seconds",
            "From the model call to its first delta",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gap = Histogram(
            "tokenwire_worker_inter_token_seconds",
            "Time between consecutive deltas from the model",
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("tokenwire_worker_tokens_total", "Deltas streamed", registry=r)
        self.replies = Counter(
            "tokenwire_worker_replies_total",
            "Replies ended, by finish reason or error code",
            ["outcome"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "tokenwire_worker_upstream_errors_total",
            "Model server failures, by code",
            ["code"],
            registry=r,
        )
        self.redeliveries = Counter(
            "tokenwire_worker_redeliveries_total",
            "Messages taken again after an earlier attempt",
            registry=r,
        )
        self.cancels = Counter("tokenwire_worker_cancels_total", "Replies cancelled", registry=r)
        self.cancel_latency = Histogram(
            "tokenwire_worker_cancel_seconds",
            "From a cancel to the reply's end event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.usage_tokens = Counter(
            "tokenwire_worker_usage_tokens_total",
            "Tokens used, by model and kind (prompt or completion)",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "tokenwire_worker_cost_usd_total", "Cost of replies, by model", ["model"], registry=r
        )

    def ended(self, terminal: ReplyEnd | ReplyError) -> None:
        if isinstance(terminal, ReplyError):
            self.replies.labels(terminal.code).inc()
            if terminal.code.startswith("upstream_"):
                self.upstream_errors.labels(terminal.code).inc()
            return
        self.replies.labels(terminal.finish_reason).inc()
        if terminal.ttft_ms is not None:
            self.ttft.observe(terminal.ttft_ms / 1000)
        self.usage_tokens.labels(terminal.model, "prompt").inc(terminal.usage.prompt_tokens)
        self.usage_tokens.labels(terminal.model, "completion").inc(terminal.usage.completion_tokens)
        if terminal.cost_usd:
            self.cost.labels(terminal.model).inc(terminal.cost_usd)

    def serve(self, host: str, port: int) -> None:
        """Serve `/metrics` from a background thread (when `port` is not 0)."""
        if port:
            start_http_server(port, addr=host, registry=self.registry)
