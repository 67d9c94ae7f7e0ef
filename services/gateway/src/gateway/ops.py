"""`/v1/ops/stats`: what the `/ops` page shows, read from this gateway's metrics.

Aggregates only (counts, rates, latency quantiles, queue depths): no user data. Like
`/metrics`, it is meant for an internal network.
"""

import math
import time
from typing import Any

from prometheus_client import CollectorRegistry


def samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in found.get(name, []))


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The `q` quantile of a Prometheus histogram, from its cumulative (upper bound, count)
    buckets, interpolated linearly within a bucket; None without observations."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            span = count - below
            return lower + (upper - lower) * ((rank - below) / span if span else 1.0)
        lower, below = upper, count
    return lower


BUDGETS = ("budget", "session_budget")


def snapshot(registry: CollectorRegistry) -> dict[str, Any]:
    found = samples(registry)
    buckets = sorted(
        (float(labels["le"]), value)
        for labels, value in found.get("tokenwire_gateway_ttft_seconds_bucket", [])
    )
    replies = {
        labels["outcome"]: value
        for labels, value in found.get("tokenwire_gateway_replies_total", [])
    }
    refusals = {
        labels["code"]: value for labels, value in found.get("tokenwire_gateway_refusals_total", [])
    }
    return {
        "at": time.time(),
        "connections": total(found, "tokenwire_gateway_connections"),
        "sessions": total(found, "tokenwire_gateway_sessions"),
        "tokens": total(found, "tokenwire_gateway_tokens_total"),
        "frames_out": total(found, "tokenwire_gateway_frames_out_total"),
        "merged": total(found, "tokenwire_gateway_merged_deltas_total"),
        "replies": replies,
        "errors": sum(
            v for k, v in replies.items() if k not in ("stop", "length", "cancelled", *BUDGETS)
        ),
        "refusals": refusals,
        "ttft_ms": {
            name: (None if (v := quantile(buckets, q)) is None else round(v * 1000, 1))
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        },
        "queue": {
            "pending": total(found, "tokenwire_broker_queue_pending"),
            "ack_pending": total(found, "tokenwire_broker_queue_ack_pending"),
            "redelivered": total(found, "tokenwire_broker_queue_redelivered"),
            "waiting_pulls": total(found, "tokenwire_broker_queue_waiting_pulls"),
            "workers": total(found, "tokenwire_broker_workers_connected"),
            "persistence_pending": total(found, "tokenwire_broker_persistence_pending"),
            "stream_messages": total(found, "tokenwire_broker_stream_messages"),
            "stream_bytes": total(found, "tokenwire_broker_stream_bytes"),
        },
    }
