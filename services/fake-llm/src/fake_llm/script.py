"""What the fake model says, and how: pure functions, no I/O.

A request's last user message may carry a directive that overrides the server's settings
for that request only, e.g. `[fake tokens=5 ttft_ms=0 delay_ms=0 fail=429 chars=200]`.
"""

import re
from dataclasses import dataclass, replace
from itertools import cycle, islice
from typing import Any, cast, get_args

from fake_llm.settings import FailMode, FakeLLMSettings

_DIRECTIVE = re.compile(r"\[fake((?:\s+\w+=[\w.]+)*)\s*\]")
_PAIR = re.compile(r"(\w+)=([\w.]+)")
SAMPLE_REPLY = (
    "tokenwire streams every token of this reply through NATS JetStream to each client of the "
    "session, resumes without gaps, and records the usage once it ends."
)
_WORDS = tuple(SAMPLE_REPLY.split())


@dataclass(frozen=True)
class Plan:
    """How one request is answered."""

    tokens: int
    ttft_ms: float
    delay_ms: float
    fail: FailMode
    fail_after: int
    chars: int = 0
    """Pad each piece to about this many characters (0: one word a piece)."""
    fail_first: int = 0
    """Fail only the first this-many requests with the same last user message (then answer)."""
    reasoning: int = 0
    """Reasoning deltas streamed before the content (as `reasoning_content`)."""
    call: dict[str, str] | None = None
    """A tool call streamed instead of the content (see `fake_llm.tool_script`)."""


def plan_for(messages: list[dict[str, Any]], settings: FakeLLMSettings, *, roll: float) -> Plan:
    """The plan for a request: settings, overridden by a directive in the last user message.

    `roll` is a uniform draw in [0, 1): settings' failure applies when `roll < fail_rate`.
    A directive's `fail` always applies.
    """
    plan = Plan(
        tokens=settings.reply_tokens,
        ttft_ms=settings.ttft_ms,
        delay_ms=settings.token_delay_ms,
        fail=settings.fail if roll < settings.fail_rate else "none",
        fail_after=settings.fail_after_tokens,
    )
    fields = directive(messages)
    if not fields:
        return plan
    fail = fields.get("fail", "429" if "fail_first" in fields else plan.fail)
    return replace(
        plan,
        tokens=int(fields.get("tokens", plan.tokens)),
        ttft_ms=float(fields.get("ttft_ms", plan.ttft_ms)),
        delay_ms=float(fields.get("delay_ms", plan.delay_ms)),
        fail=cast(FailMode, fail) if fail in get_args(FailMode) else plan.fail,
        fail_after=int(fields.get("fail_after", plan.fail_after)),
        chars=int(fields.get("chars", plan.chars)),
        fail_first=int(fields.get("fail_first", 0)),
        reasoning=int(fields.get("reasoning", 0)),
    )


def directive(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The fields of the directive in the last user message (none: empty)."""
    match = _DIRECTIVE.search(_last_user_text(messages))
    return dict(_PAIR.findall(match.group(1))) if match else {}


def conversation_key(messages: list[dict[str, Any]]) -> str:
    """What identifies "the same request" for `fail_first`: its last user message."""
    return _last_user_text(messages)


def reply_pieces(count: int, chars: int = 0) -> list[str]:
    """`count` content deltas: words, each with its leading space except the first; with
    `chars`, each word is repeated until the piece has at least that many characters."""
    words = list(islice(cycle(_WORDS), count))
    if chars:
        words = [" ".join([w] * -(-(chars + 1) // (len(w) + 1))) for w in words]
    return [word if i == 0 else f" {word}" for i, word in enumerate(words)]


def reasoning_pieces(count: int) -> list[str]:
    """`count` reasoning deltas: "Thinking step 1.", " Step 2."…"""
    return ["Thinking step 1." if i == 0 else f" Step {i + 1}." for i in range(count)]


def count_tokens(text: str) -> int:
    """A stable approximation of a tokenizer: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt size as OpenAI counts it: content plus a few tokens of framing per message."""
    return sum(count_tokens(_text(m.get("content"))) + 4 for m in messages) + 3


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def retrieved(query: str) -> tuple[str, list[dict[str, str]]] | str:
    """What the fake retrieval hook answers for `query`: `[fake sources=N]` finds N sources
    (with a context naming them); `retrieval=fail` or `retrieval=slow` asks it to fail (the
    caller answers 503) or to take 30 s."""
    match = _DIRECTIVE.search(query)
    fields: dict[str, str] = dict(_PAIR.findall(match.group(1))) if match else {}
    mode = fields.get("retrieval", "")
    if mode in ("fail", "slow"):
        return mode
    sources = [
        {
            "id": f"s{i}",
            "title": f"Source {i}",
            "url": f"https://docs.example/{i}",
            "snippet": f"What source {i} says.",
        }
        for i in range(1, int(fields.get("sources", 0)) + 1)
    ]
    context = "\n".join(f"[{s['id']}] {s['title']}: {s['snippet']}" for s in sources)
    return context, sources
