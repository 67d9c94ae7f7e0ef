"""Counting tokens with OpenAI's BPE encodings (o200k for current models, cl100k for older).

Used where the provider reports no usage (a cancelled or cut-off stream, some local servers),
to meter a reply against a daily budget, and to fit the prompt into `max_context_tokens` — only
when its bytes alone do not fit (`at_most`). A worker that needs none of these never loads an
encoding: its tables take 67 MiB, and loading them holds the event loop about 0.1 s, once.

The encodings come from `bpe_openai`'s Rust extension, loaded without the package's Python
layer: that layer copies the tables into Python dictionaries (75 MiB more) and its import takes
over a second. The extension counts the same tokens (`tests/llm_worker/test_tokens.py`).
"""

import importlib.machinery
import importlib.util
import logging
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3
_OLDER_MODELS = ("gpt-3.5", "gpt-35", "gpt-4-", "text-embedding-")
"""Models counted with cl100k (besides `gpt-4` itself); every other model with o200k, as the
current OpenAI models and unknown ones (local servers) are."""

log = logging.getLogger(__name__)


class Encoding(Protocol):
    def count(self, text: str) -> int: ...


def encoding_name(model: str) -> str:
    """The encoding a model's tokens are counted with."""
    older = model == "gpt-4" or model.startswith(_OLDER_MODELS)
    return "cl100k_base" if older else "o200k_base"


@cache
def _extension() -> Any:
    spec = importlib.util.find_spec("bpe_openai")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("bpe_openai is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_bindings{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            module_spec = importlib.util.spec_from_file_location(
                "bpe_openai._bindings", path, loader=loader
            )
            assert module_spec is not None
            module = importlib.util.module_from_spec(module_spec)
            loader.exec_module(module)
            return module
    raise ModuleNotFoundError(f"bpe_openai's extension is not in {folder}")


@cache
def load_encoding(name: str) -> Encoding:
    """The encoding `name`, loaded once per process."""
    started = time.perf_counter()
    encoding: Encoding = _extension().tokenizer_for_encoding(name)
    log.info("tokenizer %s loaded in %.0f ms", name, (time.perf_counter() - started) * 1000)
    return encoding


class TokenCounter:
    """Counts a model's tokens; its encoding is loaded on the first count."""

    def __init__(self, model: str) -> None:
        self._name = encoding_name(model)

    def count(self, text: str) -> int:
        return load_encoding(self._name).count(text) if text else 0

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
