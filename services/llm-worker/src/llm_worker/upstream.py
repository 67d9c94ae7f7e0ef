"""The model server's chat completions endpoint (any OpenAI-compatible server), over one pooled
HTTP client.

`ModelServer.stream` opens a streamed response and gives it only once it is answered with 200.
Before that, a 408, 409, 429 or 5xx answer and a connection error or timeout are retried up to
`max_retries` times — after the server's `Retry-After` (`retry-after-ms`) when it names at most
a minute, else after 0.5 s doubled each time (at most 8 s) less up to a quarter at random: the
openai SDK's own policy, which the worker used before it made its requests itself. Then, or for
any other status, it raises `UpstreamError`. A request that a kept connection lost before any
answer (`plain_http.ClosedWhenReused`) is sent again at once, once, besides those retries.
"""

import asyncio
import contextlib
import email.utils
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import httpx2
import orjson

from llm_worker.plain_http import ClosedWhenReused, PlainHTTPClient

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429})
RETRY_AFTER_MAX_S = 60.0
BACKOFF_S, BACKOFF_MAX_S = 0.5, 8.0
KEEPALIVE_S = 4.0
"""How long an idle connection is kept: less than the 5 s after which uvicorn (vLLM, the fake
model) and Node's servers close one, so that the client lets go first."""
ERROR_BODY_BYTES = 64 * 1024
"""How much of an error answer is read for its message."""


class UpstreamError(Exception):
    """The model server failed; `code` and `retryable` go into the `stream_error` event."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Answer(Protocol):
    """A model server's answer whose head was read: httpx's response, or `plain_http`'s."""

    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class ModelServer:
    """`POST {base_url}/chat/completions` with a bearer key; the connections are kept open
    between calls (at most `max_connections`): `plain_http`'s client for an `http://` server
    that no proxy from the environment applies to, else httpx's. `http` replaces the client in
    tests."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout_s: float,
        max_retries: int,
        headers: dict[str, str] | None = None,
        max_connections: int = 1000,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self.max_retries = max_retries
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        url = httpx2.URL(self.url)
        self._path = url.raw_path.decode("ascii")
        self.plain: PlainHTTPClient | None = None
        self.http: httpx2.AsyncClient | None = http
        if http is None and url.scheme == "http" and not _proxied(url.host):
            self.plain = PlainHTTPClient(
                url.host,
                url.port or 80,
                timeout_s=timeout_s,
                connect_timeout_s=min(timeout_s, 5.0),
                max_connections=max_connections,
                keepalive_s=KEEPALIVE_S,
            )
        elif http is None:
            self.http = httpx2.AsyncClient(
                timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
                limits=httpx2.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=KEEPALIVE_S,
                ),
            )

    async def close(self) -> None:
        if self.plain is not None:
            await self.plain.aclose()
        if self.http is not None:
            await self.http.aclose()

    async def _send(self, content: bytes) -> Answer:
        if self.plain is not None:
            return await self.plain.post(self._path, content, self.headers)
        assert self.http is not None  # one of the two clients is made
        request = self.http.build_request("POST", self.url, content=content, headers=self.headers)
        return await self.http.send(request, stream=True)

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Answer]:
        """The streamed 200 response to `body`, closed on exit; raises `UpstreamError`."""
        content = orjson.dumps(body)
        retry, resent = 0, False
        while True:
            try:
                response = await self._send(content)
            except httpx2.HTTPError as exc:
                if not resent and isinstance(exc, ClosedWhenReused):
                    resent = True  # at once, and not counted: no server handled it
                    continue
                if retry == self.max_retries:
                    raise transport_error(exc) from exc
                await asyncio.sleep(backoff_s(retry))
                retry += 1
                continue
            if response.status_code == 200:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            error = await status_error(response)
            if retry == self.max_retries or not should_retry(response):
                raise error
            await asyncio.sleep(retry_after_s(response.headers) or backoff_s(retry))
            retry += 1


def transport_error(exc: httpx2.HTTPError) -> UpstreamError:
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamError(
            "upstream_timeout", "the model server did not answer in time", retryable=True
        )
    if isinstance(exc, httpx2.ConnectError):
        return UpstreamError(
            "upstream_unavailable", "the model server cannot be reached", retryable=True
        )
    return UpstreamError("upstream_unavailable", str(exc) or type(exc).__name__, retryable=True)


async def status_error(response: Answer) -> UpstreamError:
    """The error a non-200 answer stands for, with the server's own message when it gives one
    (`{"error": {"message": ...}}`); the response is read (bounded) and closed."""
    raw = b""
    with contextlib.suppress(httpx2.HTTPError):
        async for part in response.aiter_bytes():
            raw += part
            if len(raw) >= ERROR_BODY_BYTES:
                break
    await response.aclose()
    status = response.status_code
    message = error_message(raw) or f"the model server answered {status}"
    if status == 429:
        return UpstreamError("upstream_rate_limited", message, retryable=True)
    return UpstreamError("upstream_error", message, retryable=status >= 500)


def error_message(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def should_retry(response: Answer) -> bool:
    verdict = response.headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait the server asks for, when it asks for at most `RETRY_AFTER_MAX_S`."""
    wait: float | None = None
    with contextlib.suppress(ValueError, TypeError):
        if (ms := headers.get("retry-after-ms")) is not None:
            wait = float(ms) / 1000
        elif (after := headers.get("retry-after")) is not None:
            try:
                wait = float(after)
            except ValueError:
                when = email.utils.parsedate_to_datetime(after)
                wait = when.timestamp() - time.time()
    return wait if wait is not None and 0 < wait <= RETRY_AFTER_MAX_S else None


def backoff_s(retry: int) -> float:
    return min(BACKOFF_S * 2.0**retry, BACKOFF_MAX_S) * (1 - 0.25 * random.random())


def _proxied(host: str) -> bool:
    """Whether a proxy from the environment (`HTTP_PROXY`, `ALL_PROXY`, not `NO_PROXY`)
    applies to plain HTTP requests to `host`."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get("http") or proxies.get("all")) and not urllib.request.proxy_bypass(host)
