import pytest

from gateway.metrics import GatewayMetrics
from gateway.ops import quantile, snapshot


def test_quantiles_interpolate_within_buckets() -> None:
    buckets = [(0.1, 0.0), (0.2, 50.0), (0.4, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.2)
    assert quantile(buckets, 0.25) == pytest.approx(0.15)
    assert quantile(buckets, 0.99) == pytest.approx(0.396)
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_snapshot_reads_the_gateway_metrics() -> None:
    metrics = GatewayMetrics()
    metrics.tokens.inc(30)
    metrics.replies.labels("stop").inc(3)
    metrics.replies.labels("upstream_error").inc()
    for seconds in (0.02, 0.03, 0.04):
        metrics.ttft.observe(seconds)
    metrics.queue_pending.labels("small").set(4)  # each model's queue: the page sums them
    metrics.queue_pending.labels("large").set(3)
    stats = snapshot(metrics.registry)
    assert (stats["tokens"], stats["replies"], stats["errors"]) == (
        30,
        {"stop": 3, "upstream_error": 1},
        1,
    )
    assert stats["queue"]["pending"] == 7
    assert 10 <= stats["ttft_ms"]["p50"] <= 50
