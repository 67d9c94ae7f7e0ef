"""Counting tokens with OpenAI's BPE encodings (o200k for current models, cl100k for older).

Used where the provider reports no usage (a cancelled or cut-off stream, some local servers),
to meter a reply against a budget, and to fit the prompt into `max_context_tokens` — only when
its bytes alone do not fit (`at_most`).

An encoding is loaded on its first use, not at start: o200k's tables take 144 MiB of memory
and 0.1 to 0.8 s with the GIL held (the event loop stalls once, on the worker's first count), and
a worker whose model server reports usage and whose prompts fit by their bytes never needs it.
"""

import logging
import time
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


@lru_cache(maxsize=16)
def _encoding(model: str) -> Any:
    started = time.perf_counter()
    encoding = _load(model)
    log.info("tokenizer for %s loaded in %.2f s", model, time.perf_counter() - started)
    return encoding


def _load(model: str) -> Any:
    with warnings.catch_warnings():  # it reads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        try:
            return bpe_openai.encoding_for_model(model)
        except Exception:  # unknown models (local servers) are counted like current OpenAI ones
            return bpe_openai.get_encoding("o200k_base")


class TokenCounter:
    def __init__(self, model: str) -> None:
        self._model = model

    def count(self, text: str) -> int:
        return len(_encoding(self._model).encode_ordinary(text)) if text else 0

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
