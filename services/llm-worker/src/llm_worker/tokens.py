"""Counting tokens with OpenAI's BPE encodings (o200k for current models, cl100k for older).

Used where the provider reports no usage (a cancelled or cut-off stream, some local servers)
and to fit the prompt into `max_context_tokens` — only when its bytes alone do not fit
(`at_most`).
"""

import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


@lru_cache(maxsize=16)
def _encoding(model: str) -> Any:
    with warnings.catch_warnings():  # it reads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        try:
            return bpe_openai.encoding_for_model(model)
        except Exception:  # unknown models (local servers) are counted like current OpenAI ones
            return bpe_openai.get_encoding("o200k_base")


class TokenCounter:
    def __init__(self, model: str) -> None:
        self._encoding = _encoding(model)

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text)) if text else 0

    def at_most(self, messages: Sequence[Any]) -> int:
        """An upper bound of `count_messages`, without encoding: a token of these byte-level
        encodings covers at least one UTF-8 byte."""
        return (
            sum(_TOKENS_PER_MESSAGE + len(str(m.get("content") or "").encode()) for m in messages)
            + _TOKENS_PER_REPLY
        )

    def count_messages(self, messages: Sequence[Any]) -> int:
        """Prompt tokens as OpenAI's chat format counts them: content plus framing."""
        return (
            sum(_TOKENS_PER_MESSAGE + self.count(str(m.get("content") or "")) for m in messages)
            + _TOKENS_PER_REPLY
        )
