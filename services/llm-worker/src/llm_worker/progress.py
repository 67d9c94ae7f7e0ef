"""What a streaming reply has so far, and the reply end and bills made from it (pure: times
are `time.monotonic()` values passed in). A reply that calls tools takes a model call a step:
its usage is every step's."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopReason
from llm_worker.completions import ChatMessage
from llm_worker.pricing import cost_usd
from llm_worker.tokens import TokenCounter
from shared.events import Billed, FinishReason, ReplyEnd, Source, ToolCall, Usage
from shared.models import Price


@dataclass
class Progress:
    """A reply's text and reasoning so far, when its first delta came, how it finished."""

    started: float
    texts: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    """The model's reasoning deltas, before (or between) its text."""
    citations: list[Source] = field(default_factory=list)
    """Sources the model cited in its stream."""
    ttft_ms: float | None = None
    finish: FinishReason = "stop"
    usage: Usage | None = None
    complete: bool = False
    """The model's stream ended by itself (a stop that came later changes nothing)."""
    last_delta: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The tools the reply called, as each call ended."""
    steps: list[Usage] = field(default_factory=list)
    """What each step before the current one cost (their model calls asked for tools)."""
    prompt: list[ChatMessage] | None = None
    """The current step's prompt (None: the job's, in the first step)."""
    arguments: list[str] = field(default_factory=list)
    """The current step's tool-call argument deltas (completion tokens too)."""
    marks: tuple[int, int] = (0, 0)
    """Where the current step's text and reasoning begin in `texts` and `thoughts`."""

    def delta(self, text: str, now: float, *, reasoning: bool = False) -> float | None:
        """Record a delta of the text (or of the reasoning); the seconds since the previous
        delta of either (None for the first, whose time is the first token's)."""
        gap = None if self.ttft_ms is None else now - self.last_delta
        if self.ttft_ms is None:
            self.ttft_ms = _ms(now - self.started)
        self.last_delta = now
        (self.thoughts if reasoning else self.texts).append(text)
        return gap

    def next_step(self, counter: TokenCounter, job: ReplyJob, prompt: list[ChatMessage]) -> None:
        """The current step asked for tools: its cost is kept, and the next step asks its
        model with `prompt`."""
        self.steps.append(self._step_usage(counter, job, self.usage))
        self.usage, self.finish, self.prompt = None, "stop", prompt
        self.marks = (len(self.texts), len(self.thoughts))
        self.arguments = []

    def step_text(self) -> str:
        return "".join(self.texts[self.marks[0] :])

    def _step_usage(self, counter: TokenCounter, job: ReplyJob, reported: Usage | None) -> Usage:
        if reported is not None:
            return reported
        text = self.step_text() + "".join(self.arguments)
        thoughts = "".join(self.thoughts[self.marks[1] :])
        return counted(counter, self.prompt or job.prompt, text, thoughts)

    def end(
        self,
        job: ReplyJob,
        stopped: StopReason | None,
        counter: TokenCounter,
        prices: Mapping[str, Price],
        now: float,
    ) -> ReplyEnd:
        """The terminal event: a reply stopped before the model ended it is `cancelled`,
        `budget` or `session_budget`, with usage counted by the tokenizer (the provider's
        was not the whole stream); usage is counted too when the provider reported none."""
        finish, usage = self.finish, self.usage
        if not self.complete and stopped in ("cancelled", "budget", "session_budget"):
            finish = stopped
            usage = None
        text, reasoning = "".join(self.texts), "".join(self.thoughts)
        usage = total([*self.steps, self._step_usage(counter, job, usage)])
        return ReplyEnd(
            session_id=job.message.session_id,
            message_id=job.message.message_id,
            attempt=job.attempt,
            model=job.model,
            text=text,
            reasoning=reasoning,
            sources=[*job.sources, *self.citations],
            warnings=list(job.warnings),
            tool_calls=self.tool_calls,
            finish_reason=finish,
            usage=usage,
            cost_usd=cost_usd(prices, job.model, usage),
            ttft_ms=self.ttft_ms,
            duration_ms=_ms(now - self.started),
            requested_by=job.message.participant,
            turn=job.message.turn,
        )

    def spent(self, job: ReplyJob, counter: TokenCounter) -> Usage | None:
        """What the model call cost so far, for an attempt that ends without a reply end:
        the provider's count if its stream ended; else the prompt counted by the tokenizer
        and one completion token per delta received (OpenAI-compatible servers stream a
        token a chunk; the same unit as the estimate of a lost attempt). None when the model
        streamed nothing (nothing to bill but, perhaps, the prompt)."""
        if self.usage is not None and self.complete:
            return total([*self.steps, self.usage])
        if not self.texts and not self.thoughts and not self.steps:
            return None
        prompt = counter.count_messages(self.prompt or job.prompt)
        texts, thoughts = len(self.texts) - self.marks[0], len(self.thoughts) - self.marks[1]
        completion = texts + thoughts + len(self.arguments)
        now = Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            estimated=True,
            reasoning_tokens=thoughts,
        )
        return total([*self.steps, now])


def billed(end: ReplyEnd, usage: Mapping[int, Usage], cost: Mapping[int, float | None]) -> Billed:
    """`end`'s call with the earlier attempts' (`usage` and `cost` by attempt)."""
    usages = [end.usage, *usage.values()]
    costs = [end.cost_usd, *cost.values()]
    return Billed(
        calls=len(usages),
        usage=total(usages),
        cost_usd=None if None in costs else round(sum(c or 0.0 for c in costs), 8),
    )


def total(usages: list[Usage]) -> Usage:
    """Several model calls' usage as one (estimated if any of them was)."""
    if len(usages) == 1:
        return usages[0]
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        total_tokens=sum(u.total_tokens for u in usages),
        estimated=any(u.estimated for u in usages),
        reasoning_tokens=sum(u.reasoning_tokens for u in usages),
    )


def counted(
    counter: TokenCounter, prompt: list[ChatMessage], text: str, reasoning: str = ""
) -> Usage:
    """Usage counted with the tokenizer, when the provider reported none: the reasoning is
    part of the completion, as providers bill it."""
    prompt_tokens = counter.count_messages(prompt)
    thinking = counter.count(reasoning)
    completion_tokens = counter.count(text) + thinking
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        estimated=True,
        reasoning_tokens=thinking,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
