"""The adaptive limit on model calls: its arithmetic with plain calls, its gate on a loop."""

import asyncio

from llm_worker.upstream_limit import Aimd, UpstreamLimit


def test_an_overloaded_server_halves_the_calls_and_successes_win_them_back() -> None:
    aimd = Aimd(ceiling=64)
    assert aimd.allowed == 64
    aimd.overloaded()
    aimd.overloaded()
    assert aimd.allowed == 16
    for _ in range(20):  # about a call's worth of successes per call regained
        aimd.succeeded()
    assert aimd.allowed == 17
    for _ in range(10_000):
        aimd.succeeded()
    assert aimd.allowed == 64  # never above the ceiling
    for _ in range(20):
        aimd.overloaded()
    assert aimd.allowed == 1  # never below one


async def test_calls_beyond_the_limit_wait_for_one_to_end() -> None:
    limit = UpstreamLimit(ceiling=4)
    await limit.report(overloaded=True)  # 2 at once
    started: list[int] = []
    release = asyncio.Event()

    async def call(n: int) -> None:
        async with limit.call():
            started.append(n)
            await release.wait()

    tasks = [asyncio.create_task(call(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert started == [0, 1]
    assert limit.running == 2
    release.set()
    await asyncio.gather(*tasks)
    assert started == [0, 1, 2]
    assert limit.running == 0
