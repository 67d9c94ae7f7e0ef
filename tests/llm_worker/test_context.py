"""Context: the newest turns that fit, never the message itself twice; Redis first, history
on a miss."""

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from llm_worker.context import ContextStore, Turn, before, fit_prompt
from llm_worker.tokens import TokenCounter
from shared import keys, rpc

COUNTER = TokenCounter("gpt-4o-mini")


def turns(n: int) -> list[Turn]:
    return [
        Turn(f"m{i}", "user" if i % 2 == 0 else "assistant", f"turn number {i}") for i in range(n)
    ]


def test_everything_fits_in_a_large_budget() -> None:
    prompt = fit_prompt("Be brief.", turns(4), Turn("new", "user", "hello"), COUNTER, 8000)
    assert [m["role"] for m in prompt] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert prompt[-1]["content"] == "hello"


def test_the_oldest_turns_go_first_when_the_budget_is_tight() -> None:
    budget = COUNTER.count_messages([{"content": "S"}, {"content": "hello"}]) + 2 * (
        COUNTER.count("turn number 9") + 3
    )
    prompt = fit_prompt("S", turns(10), Turn("new", "user", "hello"), COUNTER, budget)
    assert [m["content"] for m in prompt] == ["S", "turn number 8", "turn number 9", "hello"]
    assert COUNTER.count_messages(prompt) <= budget


@pytest.mark.parametrize(
    "text", ["hello", "naïve café", "日本語のテキスト", "🙂🙃 emoji", "x" * 3000, "  spaced  out  "]
)
def test_the_byte_bound_is_never_below_the_count(text: str) -> None:
    messages = [{"content": text}, {"content": text[::-1]}]
    assert COUNTER.count_messages(messages) <= COUNTER.at_most(messages)


def test_a_prompt_whose_bytes_fit_is_the_one_counting_would_give() -> None:
    earlier, message = turns(10), Turn("new", "user", "hello")
    texts = ["S", *(t.content for t in earlier), message.content]
    roomy = COUNTER.at_most([{"content": t} for t in texts])  # fits without encoding
    assert fit_prompt("S", earlier, message, COUNTER, roomy) == fit_prompt(
        "S", earlier, message, COUNTER, roomy * 100
    )
    assert len(fit_prompt("S", earlier, message, COUNTER, roomy)) == 12


def test_before_drops_the_message_and_what_followed_it() -> None:
    history = turns(5)
    assert [t.id for t in before(history, "m3")] == ["m0", "m1", "m2"]
    assert len(before(history, "unknown")) == 5


@pytest.mark.real
async def test_a_cache_miss_reads_history_once_then_the_cache(redis: Redis) -> None:
    asked: list[rpc.HistoryRequest] = []
    now = datetime.now(UTC)

    async def history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        asked.append(request)
        return rpc.HistoryPage(
            messages=[  # newest first, as persistence answers
                rpc.HistoryMessage(
                    message_id="m1/reply",
                    role="assistant",
                    participant="assistant",
                    content="hi there",
                    status="complete",
                    in_reply_to="m1",
                    attempt=1,
                    model="x",
                    usage=None,
                    seq=3,
                    created_at=now,
                ),
                rpc.HistoryMessage(
                    message_id="m0/reply",
                    role="assistant",
                    participant="assistant",
                    content="[upstream_error] boom",
                    status="error",
                    in_reply_to="m0",
                    attempt=1,
                    model=None,
                    usage=None,
                    seq=2,
                    created_at=now,
                ),
                rpc.HistoryMessage(
                    message_id="m1",
                    role="user",
                    participant="u",
                    content="hello",
                    status="complete",
                    in_reply_to=None,
                    attempt=None,
                    model=None,
                    usage=None,
                    seq=1,
                    created_at=now,
                ),
            ]
        )

    store = ContextStore(redis, history, max_turns=3, ttl_s=60)
    sid = uuid.uuid4().hex
    expected = [Turn("m1", "user", "hello"), Turn("m1/reply", "assistant", "hi there")]
    assert await store.turns(sid) == expected
    await store.append(sid, Turn("m2", "user", "more"), Turn("m2/reply", "assistant", "ok"))
    assert [t.id for t in await store.turns(sid)] == ["m1/reply", "m2", "m2/reply"]
    assert len(asked) == 1
    assert 0 < await redis.ttl(f"tw:ctx:{sid}") <= 60


@pytest.mark.real
async def test_a_fresh_session_skips_history_until_its_first_turns(redis: Redis) -> None:
    asked: list[rpc.HistoryRequest] = []

    async def history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        asked.append(request)
        return rpc.HistoryPage(messages=[])

    store = ContextStore(redis, history, max_turns=3, ttl_s=60)
    sid = uuid.uuid4().hex
    await redis.set(keys.fresh_session(sid), 1)
    assert await store.turns(sid) == []
    assert asked == []
    await store.append(sid, Turn("m1", "user", "hello"))
    assert not await redis.exists(keys.fresh_session(sid))
    await redis.delete(f"tw:ctx:{sid}")  # the cache expired: history is asked again
    assert await store.turns(sid) == []
    assert len(asked) == 1


def test_with_more_than_one_person_each_user_message_says_who_wrote_it() -> None:
    earlier = [
        Turn("m1", "user", "Where should we eat?", "alice"),
        Turn("m1/reply", "assistant", "Somewhere near.", ""),
        Turn("m2", "user", "Not fish, please.", "bob"),
    ]
    prompt = fit_prompt("S", earlier, Turn("m3", "user", "Fine by me.", "alice"), COUNTER, 8000)
    assert [m["content"] for m in prompt] == [
        "S",
        "alice: Where should we eat?",
        "Somewhere near.",
        "bob: Not fish, please.",
        "alice: Fine by me.",
    ]
    alone = fit_prompt("S", earlier[:2], Turn("m3", "user", "Thanks.", "alice"), COUNTER, 8000)
    assert [m["content"] for m in alone] == [
        "S",
        "Where should we eat?",
        "Somewhere near.",
        "Thanks.",
    ]
