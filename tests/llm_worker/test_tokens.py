"""The worker's token counts: the same as the tokenizer package's own, loaded only when used."""

import random
import subprocess
import sys
import warnings

import pytest

from llm_worker import tokens
from llm_worker.tokens import TokenCounter, encoding_name

SAMPLES = [
    "",
    "hello",
    "Hello, world! How's it going?\n\n  indented\tcode()",
    "数字 12345 and émojis 🎉🎉 ",
    " " * 50,
    "a\r\nb",
    "don't I'LL they're",
]


def varied_texts(count: int) -> list[str]:
    rnd = random.Random(7)
    alphabet = "abc XYZ 0123 ,.!?'\n\t é中🎉\r-_/"
    return SAMPLES + [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 80))) for _ in range(count)
    ]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_counts_equal_the_packages_own_encoding(name: str) -> None:
    with warnings.catch_warnings():  # it reads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        reference = bpe_openai.get_encoding(name)
    encoding = tokens.load_encoding(name)
    for text in varied_texts(500):
        assert encoding.count(text) == len(reference.encode_ordinary(text)), text


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("llama3", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
    ],
)
def test_models_map_to_their_encoding(model: str, name: str) -> None:
    assert encoding_name(model) == name


def test_an_encoding_is_loaded_at_the_first_count_only() -> None:
    tokens.load_encoding.cache_clear()
    counter = TokenCounter("gpt-4o-mini")
    assert counter.count("") == 0
    assert counter.at_most([{"content": "hello there"}]) == 3 + 11 + 3
    assert tokens.load_encoding.cache_info().currsize == 0
    assert counter.count("hello there") == 2
    assert tokens.load_encoding.cache_info().currsize == 1


def test_a_worker_never_imports_the_packages_python_layer() -> None:
    code = (
        "import sys; from llm_worker.tokens import TokenCounter; "
        "assert TokenCounter('gpt-4o').count('hi there') == 2; "
        "print(sorted(m for m in sys.modules if m.startswith('bpe_openai')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "['bpe_openai._bindings']"  # the extension alone
