"""The whole system as real processes, with its own nats-server, for one test module (a
module may make its own `system`), and an HTTP client of its first gateway."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from support.system import System, system_with_own_nats


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("system")
    with system_with_own_nats(workdir, redis_url=redis_url, workers=2) as running:
        yield running


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=10) as client:
        yield client
