"""Merging under backpressure is lossless, ordered, and only merges what may be merged."""

import json
from typing import Any

from gateway.outbox import Outbox, Outgoing, coalesce
from shared.events import ReplyToken
from shared.frames import StreamTokenFrame


def token(seq: int, index: int, text: str, message_id: str = "m1") -> Outgoing:
    frame = StreamTokenFrame(seq=seq, message_id=message_id, index=index, text=text)
    event = ReplyToken(session_id="s", message_id=message_id, attempt=1, index=index, text=text)
    return Outgoing(frame.model_dump_json(), seq, event)


def other(text: str, seq: int | None = None) -> Outgoing:
    return Outgoing(text, seq)


def test_a_single_item_is_sent_as_it_is() -> None:
    item = token(5, 0, "Hi")
    assert coalesce([item]) == [item.text]


def test_consecutive_deltas_merge_with_first_index_and_last_seq() -> None:
    frames = coalesce([token(5, 0, "Hel"), token(6, 1, "lo"), token(7, 2, "!")])
    assert [json.loads(f) for f in frames] == [
        {"type": "stream_token", "seq": 7, "message_id": "m1", "index": 0, "text": "Hello!"}
    ]


def test_other_frames_break_runs_and_keep_their_place() -> None:
    frames = coalesce(
        [
            token(1, 0, "a"),
            token(2, 1, "b"),
            other("END", 3),
            token(4, 0, "c"),
            token(5, 0, "x", message_id="m2"),
            token(6, 1, "y", message_id="m2"),
        ]
    )
    decoded: list[Any] = [json.loads(f) if f.startswith("{") else f for f in frames]
    assert decoded[0]["text"] == "ab"
    assert decoded[1] == "END"
    assert decoded[2]["text"] == "c"
    assert (decoded[3]["message_id"], decoded[3]["text"], decoded[3]["seq"]) == ("m2", "xy", 6)


def test_a_gap_in_indexes_is_not_merged() -> None:
    assert len(coalesce([token(1, 0, "a"), token(2, 2, "c")])) == 2


def test_outbox_hands_over_everything_queued_and_marks_overflow() -> None:
    outbox = Outbox(max_items=3)
    for i in range(3):
        outbox.offer(other(str(i)))
    assert [o.text for o in outbox.drain()] == ["0", "1", "2"]
    assert outbox.drain() == []
    for i in range(5):
        outbox.offer(other(str(i)))
    assert outbox.overflowed
    assert len(outbox.drain()) == 3


def test_the_outbox_tells_its_connection_when_something_arrives() -> None:
    calls: list[int] = []
    outbox = Outbox(max_items=3, on_ready=lambda: calls.append(len(calls)))
    outbox.offer(other("x"))
    outbox.offer(other("y"))
    assert len(calls) == 2
    outbox.interrupt()
    assert len(calls) == 3


def test_an_interrupted_outbox_sends_what_it_has_and_takes_nothing_more() -> None:
    outbox = Outbox(max_items=10)
    outbox.offer(Outgoing("before", seq=1))
    outbox.interrupt()
    outbox.offer(Outgoing("after the gap", seq=5))
    assert [item.text for item in outbox.drain()] == ["before"]
    assert outbox.interrupted
    assert outbox.drain() == []
