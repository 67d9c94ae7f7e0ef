"""The gateway's half of the second-message policy, and cancels that outlive a worker's absence.

Workers serialise `queue` and `interrupt` sessions (one reply at a time, in order) and mark the
reply they stream in Redis. Before storing a message that wants a reply, the gateway refuses it
in a `reject` session while a reply streams or waits, and in an `interrupt` session cancels the
running reply. A cancel also leaves a mark in Redis, so a worker that takes the message later
still honours it.
"""

from redis.asyncio import Redis

from gateway.bus import Bus
from shared import keys
from shared.events import Policy
from shared.frames import ErrorFrame


async def admit(redis: Redis, bus: Bus, policy: Policy, session_id: str) -> ErrorFrame | None:
    """None when the message may be stored; else the `error` frame refusing it. Raises
    `redis.exceptions.RedisError` when Redis cannot be asked."""
    if policy == "reject":
        async with redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.active_reply(session_id))
            pipe.zcard(keys.session_queue(session_id))
            active, waiting = await pipe.execute()
        if active or waiting:
            return ErrorFrame(
                code="busy",
                retry_after_s=1.0,
                detail="a reply is streaming; this session rejects messages until it ends",
            )
    elif policy == "interrupt":
        running = await redis.get(keys.active_reply(session_id))
        if running:
            message_id = running.decode() if isinstance(running, bytes) else str(running)
            await cancel(redis, bus, session_id, message_id)
    return None


async def enqueue(redis: Redis, policy: Policy, session_id: str, seq: int) -> None:
    """Put a stored message in its session's reply queue at once, so that a worker taking a
    later message of the session sees it waiting (workers add it too, idempotently)."""
    if policy in ("queue", "interrupt"):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.session_queue(session_id), {str(seq): seq}, nx=True)
            pipe.expire(keys.session_queue(session_id), keys.SESSION_QUEUE_TTL_S)
            await pipe.execute()


async def cancel(redis: Redis, bus: Bus, session_id: str, message_id: str) -> None:
    """Stop the reply to `message_id`, now or when a worker takes it."""
    await redis.set(keys.cancel_mark(session_id, message_id), 1, ex=keys.CANCEL_MARK_TTL_S)
    await bus.cancel(session_id, message_id)
