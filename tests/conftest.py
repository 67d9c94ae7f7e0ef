"""Session-wide real servers, started on first use and stopped at the end.

Set `TOKENWIRE_TEST_DOCKER=1` to take them from testcontainers instead of local binaries.
"""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support import containers, servers

DOCKER = os.environ.get("TOKENWIRE_TEST_DOCKER") == "1"


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if DOCKER:
        with containers.nats_url() as url:
            yield url
        return
    with servers.running(servers.start_nats(tmp_path_factory.mktemp("nats"))) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if DOCKER:
        with containers.redis_url() as url:
            yield url
        return
    with servers.running(servers.start_redis(tmp_path_factory.mktemp("redis"))) as server:
        yield server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the session's Redis-compatible server (overridden where a test owns one)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if DOCKER:
        with containers.postgres_url() as url:
            yield url
        return
    with servers.running(servers.start_postgres()) as server:
        yield server.url


@pytest.fixture(scope="module")
def database() -> Iterator[servers.Server]:
    """A PostgreSQL of the module's own, which its tests may stop and restart."""
    with servers.running(servers.start_postgres()) as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tokenwire.db'}"
