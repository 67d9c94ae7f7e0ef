"""The whole system as real processes, with its own nats-server, for one test module."""

from collections.abc import Iterator

import pytest

from support.system import System, system_with_own_nats


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("system")
    with system_with_own_nats(workdir, redis_url=redis_url, workers=2) as running:
        yield running
