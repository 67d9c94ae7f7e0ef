"""The fault suite's system: real processes on a restartable nats-server of its own, and the
table of counts printed at the end of the run.

`FAULTS_SCALE` (default 1, `make faults` uses 5) multiplies sessions, messages and faults:
the quick form runs in `make test`, the long one in `make faults`.
"""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from faults.ledger import Counts, table
from support import servers
from support.system import System, start_system

SCALE = max(1, int(os.environ.get("FAULTS_SCALE", "1")))
RESULTS: list[Counts] = []
FAST_FAILOVER = {"TOKENWIRE_WORKER_ACK_WAIT_S": "4"}
"""A killed worker's message goes to another one within seconds, not 30."""
MODEL = {"TOKENWIRE_FAKE_LLM_TTFT_MS": "50", "TOKENWIRE_FAKE_LLM_TOKEN_DELAY_MS": "20"}
TABLE = Path(__file__).resolve().parent / "results.md"


def scaled(n: int) -> int:
    return n * SCALE


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    workdir = tmp_path_factory.mktemp("faults-nats")
    with servers.running(servers.start_nats(workdir, secured=True)) as server:
        yield server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """A Redis-compatible server of the suite's own: the faults stop and restart it."""
    with servers.running(servers.start_redis(tmp_path_factory.mktemp("faults-redis"))) as server:
        yield server


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory,
    redis: servers.Server,
    nats: servers.Server,
    database: servers.Server,
) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("faults")
    running = start_system(
        workdir,
        nats_url=nats.url,
        redis_url=redis.url,
        database_url=database.url,
        workers=3,
        nats_users=nats.users,
        gateway_env={
            "TOKENWIRE_NATS_MONITOR_URL": nats.monitor_url,
            "TOKENWIRE_MESSAGE_RATE_PER_MIN": "100000",
            "TOKENWIRE_MAX_CONNECTIONS_PER_USER": "100000",
            # Small send buffers let a slow reader's backpressure reach the gateway's merging.
            "TOKENWIRE_WS_SNDBUF_BYTES": "16384",
        },
        common_env={**FAST_FAILOVER, "TOKENWIRE_RETRY_DELAY_S": "0.5"},
        # Many small token events, as the suite was written for: a slow reader's backlog
        # must be frames the gateway can merge.
        worker_env={"TOKENWIRE_WORKER_COALESCE_MS": "10"},
        fake_llm_env=MODEL,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """REST on the (first) gateway of the module's `system`."""
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture
def record() -> Iterator[list[Counts]]:
    """Counts a test adds here are printed in the table at the end of the run."""
    rows: list[Counts] = []
    yield rows
    RESULTS.extend(rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    text = table(RESULTS)
    terminalreporter.write_sep("=", f"fault suite counts (FAULTS_SCALE={SCALE})")
    terminalreporter.write_line(text)
    TABLE.write_text(text + "\n")
