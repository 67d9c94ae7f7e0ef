"""Versions of a reply. Regenerating the reply to message `m` makes version 2, 3…, each asked
for by a message of its own whose id is `m~v2`, `m~v3`: every key, event and row of a reply
stays keyed by one message id, and no client's id has a `~`."""

import re
from typing import Final

MAX_VERSIONS: Final = 99
MAX_ID_CHARS: Final = 128
REPLY_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}(~v[0-9]{1,2})?$"
"""A message id, or a version's (what a `cancel` may name)."""
_VERSION = re.compile(r"^(.+)~v([0-9]{1,2})$")


def version_id(message_id: str, version: int) -> str:
    """The id of version `version` (≥ 2) of the reply to `message_id`. Raises `ValueError`
    past `MAX_VERSIONS`, or for an id too long to take a suffix."""
    if not 2 <= version <= MAX_VERSIONS:
        raise ValueError(f"a reply has at most {MAX_VERSIONS} versions")
    if len(message_id) > MAX_ID_CHARS - 4:
        raise ValueError(f"message ids over {MAX_ID_CHARS - 4} characters cannot be regenerated")
    return f"{message_id}~v{version}"


def split(message_id: str) -> tuple[str, int]:
    """`m~v2` → (`m`, 2); an id without a version → (it, 1)."""
    match = _VERSION.match(message_id)
    if match is None:
        return message_id, 1
    return match.group(1), int(match.group(2))
