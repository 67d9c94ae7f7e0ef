"""What a reply reads from Redis before its model call — the session's recent turns, its system
prompt, the user's spending today — asked in the round trip of the reply's `begin`.

The answers hold for a reply that streams at once; one that waited for its turn in the
session's line reads again (the replies before it added turns meanwhile).
"""

from collections.abc import Sequence
from typing import Any

from shared.redis import Command

Answers = Sequence[Any] | None
"""The answers to one part's commands; None when they were not asked (read them then)."""


class StartReads:
    def __init__(self, **parts: list[Command]) -> None:
        self._parts = parts

    @property
    def commands(self) -> list[Command]:
        return [command for part in self._parts.values() for command in part]

    def split(self, answers: Sequence[Any]) -> dict[str, Answers]:
        """`answers` (to `commands`, in order) by part; None for a part with no commands."""
        by_part: dict[str, Answers] = {}
        start = 0
        for name, part in self._parts.items():
            by_part[name] = answers[start : start + len(part)] if part else None
            start += len(part)
        return by_part
