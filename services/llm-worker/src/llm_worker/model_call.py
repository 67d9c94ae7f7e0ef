"""What a reply asks its model (pure): the model the message names, the session's parameters,
and the prompt that fits the model's window."""

from collections.abc import Sequence

from llm_worker.attempt import ReplyJob
from llm_worker.context import Turn, fit_prompt
from llm_worker.providers import Served
from shared import versions
from shared.events import ReplyEnd, ReplyError, UserMessage

TOO_LONG = "the message is longer than the model's context allows"


def prepare(
    message: UserMessage, attempt: int, served: Served, system_prompt: str, turns: Sequence[Turn]
) -> ReplyJob | str:
    """The job for `message` on `served`'s model: its `max_tokens` (the message's, else the
    model's) and the newest turns that fit the window beside it; or why it cannot be asked."""
    model, counter = served.model, served.counter
    max_tokens = message.max_tokens or model.max_tokens
    budget = model.prompt_budget(max_tokens)
    prompt = fit_prompt(system_prompt, turns, user_turn(message), counter, budget)
    if counter.at_most(prompt) > budget and counter.count_messages(prompt) > budget:
        return TOO_LONG
    return ReplyJob(
        message, attempt, prompt, model.name, max_tokens, temperature=message.temperature
    )


def context_update(
    message: UserMessage, terminal: ReplyEnd | ReplyError
) -> tuple[tuple[Turn, ...], Turn | None]:
    """What the session's context gains from an answered message: a reply's exchange, appended;
    or, for a new version of a reply, its answer in place of the first's (returned apart). An
    error adds nothing."""
    if not isinstance(terminal, ReplyEnd):
        return (), None
    asked, version = versions.split(message.message_id)
    answer = Turn(f"{asked}/reply", "assistant", terminal.text)
    if version > 1:
        return (), answer
    return (user_turn(message), answer), None


def user_turn(message: UserMessage) -> Turn:
    return Turn(message.message_id, "user", message.content, message.participant)
