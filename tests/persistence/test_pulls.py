"""persistence's pull loop: a fetch that got nothing is not a failure."""

import asyncio
import logging
from typing import Any, cast

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from persistence.pulls import pull_forever


class Subscription:
    """Fetches that answer from a script: an exception is raised, a list returned."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:  # noqa: ASYNC109 (nats-py's)
        if not self.script:
            await asyncio.sleep(3600)  # nothing more comes
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return cast(list[Msg], step)

    async def unsubscribe(self) -> None:
        return None


class JetStream:
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    async def pull_subscribe_bind(self, consumer: str, stream: str) -> Subscription:
        return self.sub


@pytest.mark.parametrize("nothing", [TimeoutError(), nats.errors.TimeoutError()])
async def test_a_fetch_that_got_nothing_is_fetched_again_at_once(
    nothing: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[list[Any]] = []
    done = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        handled.append(msgs)
        done.set()

    js = cast(JetStreamContext, JetStream(Subscription([nothing, ["m1"]])))
    loop = asyncio.create_task(pull_forever(js, "c", handle, batch=10, retry_delay_s=30.0))
    await asyncio.wait_for(done.wait(), 5)  # not after the 30 s retry delay
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert handled == [["m1"]]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_failed_fetch_is_retried_after_the_delay(caplog: pytest.LogCaptureFixture) -> None:
    handled = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        handled.set()

    js = cast(JetStreamContext, JetStream(Subscription([ConnectionError("gone"), ["m1"]])))
    loop = asyncio.create_task(pull_forever(js, "c", handle, batch=10, retry_delay_s=0.05))
    await asyncio.wait_for(handled.wait(), 5)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert "fetch from c failed" in caplog.text
