"""A connection's outbox never blocks the fan-out; an overflowing one is marked for 1013."""

from gateway.hub import OVERFLOW, Outbox


def test_outbox_queues_until_full_then_marks_overflow_once() -> None:
    outbox = Outbox(max_frames=2)
    for seq in range(1, 6):
        outbox.offer(seq, f"frame {seq}")
    assert outbox.overflowed
    drained = [outbox.queue.get_nowait() for _ in range(outbox.queue.qsize())]
    assert drained == [(1, "frame 1"), (2, "frame 2"), OVERFLOW]
