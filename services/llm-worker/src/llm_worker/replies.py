"""One reply: stream a completion and publish start, tokens and exactly one terminal event."""

import time
from dataclasses import dataclass

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from llm_worker.completions import Delta, Finish, UpstreamError, UsageReport, stream_completion
from llm_worker.publisher import ReplyPublisher
from shared.events import (
    FinishReason,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
)


@dataclass(frozen=True)
class ReplyOptions:
    model: str
    max_tokens: int
    system_prompt: str


async def generate_reply(
    message: UserMessage,
    attempt: int,
    *,
    client: AsyncOpenAI,
    publisher: ReplyPublisher,
    options: ReplyOptions,
) -> ReplyEnd | ReplyError:
    """Answer `message`; returns the terminal event it published.

    Upstream failures end in a `ReplyError`; publishing failures propagate (the message is
    then not acked and another worker tries again).
    """
    started = time.perf_counter()
    sid, mid = message.session_id, message.message_id
    await publisher.start(
        ReplyStart(session_id=sid, message_id=mid, attempt=attempt, model=options.model)
    )
    texts: list[str] = []
    ttft_ms: float | None = None
    finish: FinishReason = "stop"
    usage: Usage | None = None
    prompt = _prompt(message, options.system_prompt)
    try:
        async for piece in stream_completion(
            client, model=options.model, messages=prompt, max_tokens=options.max_tokens
        ):
            match piece:
                case Delta(text=text):
                    if ttft_ms is None:
                        ttft_ms = _ms_since(started)
                    await publisher.token(
                        ReplyToken(
                            session_id=sid,
                            message_id=mid,
                            attempt=attempt,
                            index=len(texts),
                            text=text,
                        )
                    )
                    texts.append(text)
                case Finish(reason=reason):
                    finish = "length" if reason == "length" else "stop"
                case UsageReport(usage=reported):
                    usage = reported
    except UpstreamError as exc:
        error = ReplyError(
            session_id=sid,
            message_id=mid,
            attempt=attempt,
            code=exc.code,
            message=exc.message,
            retryable=exc.retryable,
        )
        await publisher.end(error)
        return error
    text = "".join(texts)
    end = ReplyEnd(
        session_id=sid,
        message_id=mid,
        attempt=attempt,
        model=options.model,
        text=text,
        finish_reason=finish,
        usage=usage or _estimate(prompt, text),
        ttft_ms=ttft_ms,
        duration_ms=_ms_since(started),
    )
    await publisher.end(end)
    return end


def _prompt(message: UserMessage, system_prompt: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": message.content},
    ]


def _estimate(prompt: list[ChatCompletionMessageParam], text: str) -> Usage:
    """Usage when the provider reports none: about four characters a token."""
    prompt_chars = sum(len(str(m.get("content", ""))) for m in prompt)
    prompt_tokens = (prompt_chars + 3) // 4
    completion_tokens = (len(text) + 3) // 4
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        estimated=True,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
