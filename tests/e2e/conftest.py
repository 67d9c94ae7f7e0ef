"""The whole system as real processes, with its own nats-server, for one test module."""

from collections.abc import Iterator

import pytest

from support import servers
from support.system import System, start_system


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("system")
    with servers.running(servers.start_nats(workdir)) as nats:
        running = start_system(workdir, nats_url=nats.url, redis_url=redis_url, workers=2)
        try:
            yield running
        finally:
            running.stop()
