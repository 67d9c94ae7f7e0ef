"""Coalescer: slow deltas go out at once, fast ones are joined per window, nothing is lost.

The first tests run on a clock of their own and a timer that only yields; the rest on the
real clock."""

import asyncio
import itertools
import math
import time

import pytest

from llm_worker.coalescer import Coalescer


class Sink:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.events: list[tuple[int, str, float]] = []
        self.deltas: list[int] = []
        self.delay_s = delay_s

    async def send(self, index: int, text: str, deltas: int) -> None:
        self.deltas.append(deltas)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.events.append((index, text, time.monotonic()))


class Clock:
    """A clock the test sets, and a `sleep` that moves it on and only yields."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_deltas_within_a_window_wait_for_its_end_on_a_clock_of_its_own() -> None:
    sink, clock = Sink(), Clock()
    tokens = Coalescer(sink.send, 0.010, clock=clock, sleep=clock.sleep)
    await tokens.add("a")  # the first goes out at once
    clock.now += 0.002
    await tokens.add("b")
    clock.now += 0.002
    await tokens.add("c")
    assert [t for _, t, _ in sink.events] == ["a"]
    for _ in range(3):  # the timer fires
        await asyncio.sleep(0)
    assert [t for _, t, _ in sink.events] == ["a", "bc"]
    assert clock.waits == [pytest.approx(0.006)]  # until the window's end
    assert sink.deltas == [1, 2]
    clock.now += 0.020
    await tokens.add("d")  # a quiet window later: at once
    assert [t for _, t, _ in sink.events] == ["a", "bc", "d"]
    await tokens.close()


async def test_close_publishes_what_waits_without_waiting() -> None:
    sink, clock = Sink(), Clock()
    tokens = Coalescer(sink.send, 10.0, clock=clock, sleep=clock.sleep)
    await tokens.add("a")
    clock.now += 0.1
    await tokens.add("b")
    await tokens.close()
    assert [(i, t) for i, t, _ in sink.events] == [(0, "a"), (1, "b")]
    assert clock.now == pytest.approx(100.1)  # close did not wait for the window


async def test_a_delta_after_a_quiet_window_is_published_at_once() -> None:
    sink = Sink()
    tokens = Coalescer(sink.send, 0.02)
    for text in ("a", "b", "c"):
        await tokens.add(text)
        assert sink.events[-1][1] == text  # published before add returned
        await asyncio.sleep(0.03)
    await tokens.close()
    assert [(i, t) for i, t, _ in sink.events] == [(0, "a"), (1, "b"), (2, "c")]


async def test_fast_deltas_are_joined_once_per_window() -> None:
    sink = Sink()
    tokens = Coalescer(sink.send, 0.05)
    started = time.monotonic()
    for i in range(200):
        await tokens.add(f"{i},")
        if i % 20 == 0:
            await asyncio.sleep(0.005)
    await tokens.close()
    texts = [t for _, t, _ in sink.events]
    assert "".join(texts) == "".join(f"{i}," for i in range(200))
    assert [i for i, _, _ in sink.events] == list(range(len(texts)))
    assert texts[0] == "0,"  # the first goes out at once
    assert sum(sink.deltas) == 200
    assert all(d == t.count(",") for d, t in zip(sink.deltas, texts, strict=True))
    assert 2 <= len(texts) <= 2 + (time.monotonic() - started) / 0.05
    times = [at for _, _, at in sink.events[:-1]]  # close publishes the rest without waiting
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))


async def test_close_waits_for_a_publish_in_flight_and_keeps_order() -> None:
    sink = Sink(delay_s=0.03)
    tokens = Coalescer(sink.send, 0.01)
    await tokens.add("a")
    await tokens.add("b")
    await asyncio.sleep(0.02)  # the flusher is now publishing "b"
    await tokens.add("c")
    await tokens.close()
    assert "".join(t for _, t, _ in sink.events) == "abc"
    assert [i for i, _, _ in sink.events] == list(range(len(sink.events)))


async def test_window_zero_publishes_every_delta() -> None:
    sink = Sink()
    tokens = Coalescer(sink.send, 0.0)
    for text in "abcdef":
        await tokens.add(text)
    assert [t for _, t, _ in sink.events] == list("abcdef")


async def test_a_failed_deferred_publish_surfaces() -> None:
    calls = 0

    async def send(index: int, text: str, deltas: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("stream gone")

    tokens = Coalescer(send, 0.01)
    await tokens.add("a")
    await tokens.add("b")  # deferred
    await asyncio.sleep(0.03)
    with pytest.raises(ConnectionError):
        await tokens.add("c")


async def test_abandon_publishes_nothing_more() -> None:
    sink = Sink()
    tokens = Coalescer(sink.send, 0.05)
    await tokens.add("a")
    await tokens.add("b")
    tokens.abandon()
    await asyncio.sleep(0.08)
    assert [t for _, t, _ in sink.events] == ["a"]


async def test_replies_whose_windows_end_on_one_tick_publish_together() -> None:
    """Windows end on a clock shared by all replies (ticks half a window apart): the NATS
    client then writes the events of many replies at once."""
    window = 0.05
    sinks = [Sink(), Sink()]
    replies = [Coalescer(sink.send, window) for sink in sinks]
    tick = window / 2
    await asyncio.sleep(math.ceil(time.monotonic() / tick) * tick + 0.002 - time.monotonic())
    for reply in replies:  # first deltas go out at once, 5 ms apart
        await reply.add("a")
        await reply.add("b")  # deferred to a tick
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    firsts = [sink.events[0][2] for sink in sinks]
    seconds = [sink.events[1][2] for sink in sinks]
    assert all(b - a >= window - 0.001 for a, b in zip(firsts, seconds, strict=True))
    assert abs(seconds[0] - seconds[1]) < 0.003  # the same tick
    assert seconds[0] - firsts[0] <= window + tick
    for reply in replies:
        await reply.close()
