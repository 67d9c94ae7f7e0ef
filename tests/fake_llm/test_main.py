"""The fake model speaks OpenAI's streaming format exactly, and fails on request."""

import json
import random
from typing import Any

import httpx
import httpx2
import pytest
from openai import AsyncOpenAI, RateLimitError

from fake_llm.main import DroppedConnection, create_app
from fake_llm.settings import FakeLLMSettings

FAST = FakeLLMSettings(ttft_ms=0, token_delay_ms=0, reply_tokens=4)


def client_for(settings: FakeLLMSettings = FAST) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, rng=random.Random(1)))
    return httpx.AsyncClient(transport=transport, base_url="http://fake")


def sse_payloads(body: str) -> list[str]:
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


async def post(body: dict[str, Any], settings: FakeLLMSettings = FAST) -> httpx.Response:
    async with client_for(settings) as client:
        return await client.post("/v1/chat/completions", json=body)


async def test_stream_is_role_chunk_content_chunks_finish_usage_done() -> None:
    answer = await post(
        {
            "model": "m",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hello"}],
        }
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(answer.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert content == ["tokenwire", " streams", " every", " token"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4


async def test_without_include_usage_there_is_no_usage_chunk() -> None:
    answer = await post(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    )
    chunks = [json.loads(p) for p in sse_payloads(answer.text)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_cuts_the_reply_with_finish_reason_length() -> None:
    answer = await post(
        {
            "model": "m",
            "stream": False,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hello"}],
        }
    )
    body = answer.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "tokenwire streams"
    assert body["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(("fail", "status"), [("429", 429), ("500", 500)])
async def test_directive_injects_http_failures(fail: str, status: int) -> None:
    answer = await post(
        {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": f"hi [fake fail={fail}]"}],
        }
    )
    assert answer.status_code == status
    assert answer.json()["error"]["message"]


async def test_settings_fail_rate_applies_to_that_share_of_requests() -> None:
    settings = FakeLLMSettings(ttft_ms=0, token_delay_ms=0, fail="500", fail_rate=1.0)
    answer = await post({"model": "m", "messages": [{"role": "user", "content": "x"}]}, settings)
    assert answer.status_code == 500


async def test_drop_cuts_the_stream_after_some_tokens() -> None:
    with pytest.raises(DroppedConnection):
        await post(
            {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "hi [fake fail=drop fail_after=2]"}],
            }
        )


async def test_bad_requests_get_openai_style_errors() -> None:
    async with client_for() as client:
        answer = await client.post("/v1/chat/completions", content=b"{nope")
        assert answer.status_code == 400
        assert answer.json()["error"]["type"] == "invalid_request_error"
        answer = await client.post("/v1/chat/completions", json={"messages": []})
        assert answer.status_code == 400


async def test_the_official_sdk_reads_the_stream() -> None:
    transport = httpx2.ASGITransport(app=create_app(FAST))
    async with httpx2.AsyncClient(transport=transport) as http:
        sdk = AsyncOpenAI(api_key="unused", base_url="http://fake/v1", http_client=http)
        stream = await sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hello [fake tokens=3]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
        assert text == "tokenwire streams every"
        assert usage is not None
        assert usage.completion_tokens == 3
        with pytest.raises(RateLimitError):
            await sdk.with_options(max_retries=0).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "[fake fail=429]"}]
            )
