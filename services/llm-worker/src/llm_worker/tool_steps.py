"""The tool calls of one model call (a step of a reply), assembled from their streamed deltas,
and what the next step's prompt gains from them. Pure: no I/O.

A call is known across attempts by where it stands and what it asks (`run_key`): the same
reply (message and version), step and position, the same tool and the same arguments. A
model's own call ids are drawn anew by every generation, so they cannot tell that a
redelivered reply asks again for a call its first attempt made.
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from llm_worker.completions import ChatMessage, ToolCallDelta
from shared.events import MAX_TOOL_RESULT_CHARS, ToolCall, UserMessage

SHOWN_RESULT_CHARS = 500
"""What clients see of a tool's result (the model gets up to `MAX_RESULT_CHARS`)."""
MAX_RESULT_CHARS = 16_000
MAX_ARGUMENTS_CHARS = 16_000


@dataclass(slots=True)
class Asked:
    """A tool call the model asks for."""

    index: int
    call_id: str
    name: str
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Ran:
    """What a tool call came to: `content` is what the model is given."""

    ok: bool
    content: str
    error: str = ""

    @classmethod
    def failed(cls, error: str) -> "Ran":
        return cls(False, json.dumps({"error": error}), error[:500])

    def shown(self) -> str:
        """The result as clients see it: its start."""
        text = self.content if self.ok else ""
        return text if len(text) <= SHOWN_RESULT_CHARS else text[: SHOWN_RESULT_CHARS - 1] + "…"

    def record(self, step: int, call: Asked) -> ToolCall:
        return ToolCall(
            call_id=call.call_id,
            name=call.name,
            step=step,
            arguments=call.arguments[:MAX_ARGUMENTS_CHARS],
            status="done" if self.ok else "failed",
            result=self.shown()[:MAX_TOOL_RESULT_CHARS],
            error=self.error,
        )


@dataclass
class StepCalls:
    """The calls one model call asks for, as their deltas come."""

    step: int
    calls: dict[int, Asked] = field(default_factory=dict)

    def add(self, delta: ToolCallDelta) -> Asked:
        """Add a delta; the call it belongs to (its id is the model's, or made up from the
        step and position when the model gives none)."""
        call = self.calls.get(delta.index)
        if call is None:
            call_id = delta.call_id or f"call_{self.step}_{delta.index}"
            call = self.calls[delta.index] = Asked(delta.index, call_id, delta.name)
        elif delta.name and not call.name:
            call.name = delta.name
        call.arguments += delta.arguments
        return call

    def asked(self) -> list[Asked]:
        return [self.calls[i] for i in sorted(self.calls)]


def next_messages(text: str, calls: list[Asked], ran: list[Ran]) -> list[ChatMessage]:
    """What the next step's prompt gains: the model's message asking for `calls` (with the
    text it said before them), then each call's result."""
    asking: ChatMessage = {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }
    answers: list[ChatMessage] = [
        {"role": "tool", "tool_call_id": call.call_id, "content": result.content}
        for call, result in zip(calls, ran, strict=True)
    ]
    return [asking, *answers]


def arguments_of(call: Asked) -> dict[str, Any] | str:
    """The call's arguments as a JSON object, or why they are none."""
    if len(call.arguments) > MAX_ARGUMENTS_CHARS:
        return f"the arguments are longer than {MAX_ARGUMENTS_CHARS} characters"
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return "the arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return "the arguments are not a JSON object"
    return arguments


def run_key(message: UserMessage, step: int, call: Asked, arguments: dict[str, Any]) -> str:
    """What identifies the call across attempts (see the module's docstring)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{call.name}\0{canonical}".encode()).hexdigest()[:16]
    return f"{message.session_id}:{message.message_id}:{step}.{call.index}:{digest}"
