"""The fake model's tool calls (pure parts): it asks for an offered tool until the prompt holds
`tool_steps` of its answers, with arguments that script the fake tool, in three pieces."""

import json
from typing import Any

from fake_llm.tool_script import argument_pieces, asked_call

OFFERED = {"tools": [{"type": "function", "function": {"name": "lookup"}}]}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_an_offered_tool_is_asked_for_until_its_steps_are_answered() -> None:
    ask = [user("[fake tool=lookup tool_steps=2 tool_delay_ms=30 tool_fail=1]")]
    call = asked_call(OFFERED, ask)
    assert call is not None
    assert call["name"] == "lookup"
    assert call["id"].startswith("call_")
    assert json.loads(call["arguments"]) == {"query": "step 1", "delay_ms": 30, "fail": True}
    answered = [*ask, {"role": "assistant", "content": ""}, {"role": "tool", "content": "x"}]
    second = asked_call(OFFERED, answered)
    assert second is not None
    assert json.loads(second["arguments"])["query"] == "step 2"
    assert asked_call(OFFERED, [*answered, {"role": "tool", "content": "y"}]) is None


def test_no_call_without_the_tool_offered_and_bad_arguments_on_request() -> None:
    assert asked_call({}, [user("[fake tool=lookup]")]) is None
    assert asked_call(OFFERED, [user("hello")]) is None
    bad = asked_call(OFFERED, [user("[fake tool=lookup tool_args=bad]")])
    assert bad is not None
    assert bad["arguments"] == "{not json"


def test_arguments_stream_in_three_pieces() -> None:
    pieces = argument_pieces('{"query": "step 1"}')
    assert len(pieces) == 3
    assert "".join(pieces) == '{"query": "step 1"}'
