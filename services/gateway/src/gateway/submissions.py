"""Submitting a user message: admitted in one Redis round trip (`shared.reply_queue`), then
stored in the stream (a second round trip only withdraws a message the stream did not store);
and cancelling a reply, for those who may.

Without Redis nothing is stored: admission fails closed for anything that costs model tokens.
"""

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from gateway.auth import Principal
from gateway.bus import Bus, Unavailable
from gateway.model_pools import ModelPools
from gateway.refusal import CANCEL_UNCHECKED, NOT_STORED, Refusal
from gateway.unserved import UnservedMessages
from shared import rpc, telemetry, versions
from shared.events import UserMessage
from shared.frames import MessageFrame, WaitingFrame
from shared.models import Catalogue
from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits, Refused

log = logging.getLogger(__name__)
VIEWERS_READ = Refusal("forbidden", "a viewer reads the session and sends nothing")


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    """The message's stream sequence."""
    new: bool
    """False for a resend within the stream's dedup window: stored once."""
    waiting: WaitingFrame | None = None
    """For the sender: no worker serves the message's model now."""


class Submissions:
    def __init__(
        self,
        queue: ReplyQueue,
        bus: Bus,
        limits: AdmissionLimits,
        models: Catalogue,
        pools: ModelPools | None = None,
        unserved: UnservedMessages | None = None,
    ) -> None:
        self._queue = queue
        self._bus = bus
        self._models = models
        self.pools = pools
        """Which models have a worker: a message for one without is refused (None: never)."""
        self.unserved = unserved
        """Where a message no worker serves waits for one, for a while (None: for ever)."""
        self.limits = limits

    async def submit(
        self, session: rpc.SessionInfo, principal: Principal, frame: MessageFrame
    ) -> Stored | Refusal:
        """Store `frame` as `principal`'s message once every limit and the session's policy
        agree (its `message` echo then acknowledges it), or say why not."""
        sid, user = session.session_id, principal.user_id
        if user in session.viewers:
            return VIEWERS_READ
        if frame.reply and self.pools is not None:
            await self.pools.recheck(session.model)
            if unserved := self.pools.refusal(session.model):
                return unserved
        try:
            admission = await self._queue.admit(
                self.limits,
                user_id=user,
                session_id=sid,
                message_id=frame.message_id,
                reply=frame.reply,
                policy=session.policy,
                daily_budget=principal.daily_budget,
            )
        except RedisError as exc:
            log.warning("message refused, not stored: %s", exc)
            return NOT_STORED
        if isinstance(admission, Refused):
            return refusal(admission, self.limits)
        if admission.interrupted is not None:
            await self._bus.cancel(sid, admission.interrupted)
        try:
            seq, new = await self._bus.store_user_message(
                _event(session, principal, frame, admission.turn),
                headers=telemetry.trace_headers(),
                pool=self._models.pool(session.model),
            )
        except Unavailable as exc:
            log.warning("message refused, not stored: %s", exc)
            with contextlib.suppress(RedisError):
                await self._queue.withdraw(sid, frame.message_id)
            return NOT_STORED
        return Stored(seq, new, self._waiting(session, frame) if new else None)

    def _waiting(self, session: rpc.SessionInfo, frame: MessageFrame) -> WaitingFrame | None:
        """When no worker serves the message's model: what its sender is told, and its
        deadline noted (with `unserved`)."""
        if not frame.reply or self.pools is None:
            return None
        if (model := self.pools.waiting(session.model)) is None:
            return None
        detail = f"no worker serves the model {model} now: the message waits for one"
        timeout_s = None
        if self.unserved is not None:
            self.unserved.watch(session.session_id, frame.message_id, model)
            timeout_s = self.unserved.deadlines.timeout_s
            detail += f" for up to {timeout_s:g} s"
        return WaitingFrame(
            message_id=frame.message_id, model=model, give_up_after_s=timeout_s, detail=detail
        )

    async def cancel(
        self, session: rpc.SessionInfo, principal: Principal, message_id: str
    ) -> Refusal | None:
        """Stop the reply to `message_id`, now or when a worker takes it, if `principal` may:
        the message's sender, the session's owner or an administrator; anyone else is refused.
        A message with no sender known (no reply asked for, or one long over) has nothing to
        stop. Without Redis the sender is not known: the owner's and administrators' cancels
        still reach the workers, others are refused as unavailable."""
        sid = session.session_id
        any_reply = principal.admin or principal.user_id == session.owner
        try:
            verdict = await self._queue.cancel(
                sid, message_id, user_id=principal.user_id, any_reply=any_reply
            )
        except RedisError as exc:
            if not any_reply:
                log.warning("cancel of %s not checked: %s", message_id, exc)
                return CANCEL_UNCHECKED
            verdict = "cancelled"
        match verdict:
            case "not_theirs":
                return Refusal(
                    "forbidden",
                    f"only the sender of {message_id}, the session's owner or an administrator "
                    "can cancel its reply",
                )
            case "unknown":
                return None
        await self._bus.cancel(sid, message_id)
        return None


def refusal(refused: Refused, limits: AdmissionLimits) -> Refusal:
    """What the client is told for each verdict of `ReplyQueue.admit`."""
    match refused.verdict:
        case "rate_limited":
            detail = f"at most {limits.messages_per_min:g} messages a minute"
            return Refusal("rate_limited", detail, refused.retry_after_s)
        case "budget_exceeded":
            detail = f"your daily budget of {refused.limit} tokens is spent"
            return Refusal("budget_exceeded", detail, _to_midnight())
        case "session_budget_exceeded":
            detail = f"this session's cap of {refused.limit} tokens is spent"
            return Refusal("budget_exceeded", detail)
        case "replies_in_flight":
            detail = f"at most {limits.replies_per_session} replies at once in a session"
            return Refusal("busy", detail, refused.retry_after_s)
        case "busy":
            detail = "a reply is streaming; this session rejects messages until it ends"
            return Refusal("busy", detail, refused.retry_after_s)


def _to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return round((midnight - now).total_seconds())


def _event(
    session: rpc.SessionInfo, principal: Principal, frame: MessageFrame, turn: int
) -> UserMessage:
    return UserMessage(
        session_id=session.session_id,
        message_id=frame.message_id,
        participant=principal.user_id,
        daily_budget=principal.daily_budget,
        content=frame.content,
        reply=frame.reply,
        policy=session.policy,
        model=session.model,
        temperature=session.temperature,
        max_tokens=session.max_tokens,
        turn=turn or None,
        name_session=_names_session(session, frame, turn),
    )


def _names_session(session: rpc.SessionInfo, frame: MessageFrame, turn: int) -> bool:
    """The first message of an untitled session, asking for a reply (not a new version's)."""
    first = turn == 1 and versions.split(frame.message_id)[1] == 1
    return first and frame.reply and not session.title
