"""The model server's client: what it sends, what it retries and after how long, and the
errors it gives up with."""

import asyncio
import email.utils
import time

import httpx2
import pytest

from llm_worker.upstream import ModelServer, UpstreamError, retry_after_s
from support.llm_mock import chunk, model_over, sse


def answers(*responses: httpx2.Response) -> tuple[list[httpx2.Request], ModelServer]:
    """A server answering with `responses` in turn, and the requests it saw."""
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return responses[len(seen) - 1]

    return seen, model_over(handle, max_retries=len(responses) - 1)


def ok() -> httpx2.Response:
    return httpx2.Response(200, content=sse(chunk("x")))


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, recorded instead of slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return slept


async def test_request_is_a_json_post_with_the_key_and_headers() -> None:
    seen, server = answers(ok())
    server.headers["X-Extra"] = "1"
    async with server.stream({"model": "m"}) as response:
        assert response.status_code == 200
    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", "http://llm/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-extra"] == "1"
    assert request.content == b'{"model":"m"}'


def test_openai_is_the_default_server_and_a_keyless_server_gets_no_authorization() -> None:
    assert ModelServer(None, "k", timeout_s=1, max_retries=0).url == (
        "https://api.openai.com/v1/chat/completions"
    )
    local = ModelServer("http://127.0.0.1:8000/v1/", None, timeout_s=1, max_retries=0)
    assert local.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert "Authorization" not in local.headers


async def test_overload_is_retried_after_the_wait_the_server_asks_for(waits: list[float]) -> None:
    seen, server = answers(
        httpx2.Response(429, headers={"retry-after": "2"}),
        httpx2.Response(503, headers={"retry-after-ms": "250"}),
        ok(),
    )
    async with server.stream({}) as response:
        assert response.status_code == 200
    assert len(seen) == 3
    assert waits == [2.0, 0.25]


async def test_without_a_usable_retry_after_the_wait_backs_off(waits: list[float]) -> None:
    _, server = answers(
        httpx2.Response(500),
        httpx2.Response(502, headers={"retry-after": "3600"}),  # too long: backoff instead
        httpx2.Response(500, headers={"retry-after": "soon"}),
        ok(),
    )
    async with server.stream({}):
        pass
    assert len(waits) == 3
    for wait, full in zip(waits, (0.5, 1.0, 2.0), strict=True):
        assert 0.75 * full <= wait <= full


@pytest.mark.parametrize(
    ("status", "headers", "tries"),
    [(400, {}, 1), (401, {}, 1), (409, {}, 2), (500, {"x-should-retry": "false"}, 1)],
)
async def test_what_is_retried(
    status: int, headers: dict[str, str], tries: int, waits: list[float]
) -> None:
    seen, server = answers(httpx2.Response(status, headers=headers), ok())
    if tries == 1:
        with pytest.raises(UpstreamError):
            async with server.stream({}):
                pass
    else:
        async with server.stream({}):
            pass
    assert len(seen) == tries


async def test_giving_up_says_what_the_server_said(waits: list[float]) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests"}}
    _, server = answers(*[httpx2.Response(429, json=body)] * 3)
    with pytest.raises(UpstreamError) as caught:
        async with server.stream({}):
            pass
    assert (caught.value.code, caught.value.message, caught.value.retryable) == (
        "upstream_rate_limited",
        "Rate limit reached",
        True,
    )
    assert len(waits) == 2


async def test_an_answer_that_is_not_json_still_gives_a_clear_error() -> None:
    _, server = answers(httpx2.Response(404, text="<html>not found</html>"))
    with pytest.raises(UpstreamError) as caught:
        async with server.stream({}):
            pass
    assert caught.value.message == "the model server answered 404"
    assert not caught.value.retryable


async def test_a_timeout_is_retried_then_reported(waits: list[float]) -> None:
    tries = 0

    def handle(request: httpx2.Request) -> httpx2.Response:
        nonlocal tries
        tries += 1
        raise httpx2.ReadTimeout("slow", request=request)

    with pytest.raises(UpstreamError) as caught:
        async with model_over(handle, max_retries=1).stream({}):
            pass
    assert (tries, caught.value.code) == (2, "upstream_timeout")


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    wait = retry_after_s(httpx2.Headers({"retry-after": later}))
    assert wait is not None
    assert 3 < wait <= 5
