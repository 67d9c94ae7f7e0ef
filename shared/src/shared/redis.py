"""The Redis client every service uses: one that survives a Redis restart.

A pooled connection that Redis closed (a restart, a failover) fails once; the client retries a
command on a fresh connection before it reports an error, so one restart does not cost a
refused message or a failed readiness check.
"""

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def redis_client(url: str, *, timeout_s: float) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=30,
    )
