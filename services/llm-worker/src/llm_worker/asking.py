"""What a reply asks its model, read just before the call: the session's turns before the
asked message, its system prompt, what the retrieval hook finds, and — for a retry — what
earlier attempts left in the stream (to bill them)."""

import dataclasses
from typing import Any

from llm_worker.attempt import ReplyJob
from llm_worker.context import ContextStore, before
from llm_worker.delivery import Delivery
from llm_worker.earlier_reader import EarlierReader
from llm_worker.model_call import prepare
from llm_worker.prompts import SystemPrompts
from llm_worker.providers import Served
from llm_worker.retrieval import Retrieval, with_context
from shared import versions


@dataclasses.dataclass
class Asking:
    context: ContextStore
    prompts: SystemPrompts
    retrieval: Retrieval | None = None
    earlier: EarlierReader | None = None

    async def job(self, delivery: Delivery, served: Served, read: dict[str, Any]) -> ReplyJob | str:
        """The job, or why the model cannot be asked (the prompt is too long)."""
        message = delivery.message
        sid = message.session_id
        asked, _ = versions.split(message.message_id)  # a new version sees what its first saw
        turns = before(await self.context.turns(sid, read.get("context")), asked)
        prompt = await self.prompts.of(sid, read.get("prompt"))
        found = await self.retrieval.find(message, turns) if self.retrieval else None
        if found is not None and not isinstance(found, str):
            prompt = with_context(prompt, found.context)
        job = prepare(message, delivery.attempt, served, prompt, turns)
        if isinstance(job, str):
            return job
        if isinstance(found, str):
            job = dataclasses.replace(job, warnings=(found,))
        elif found is not None:
            job = dataclasses.replace(job, sources=found.sources)
        if delivery.attempt > 1 and self.earlier is not None:
            earlier = await self.earlier.read(message, delivery.seq, delivery.attempt)
            job = dataclasses.replace(job, earlier=earlier)
        return job
