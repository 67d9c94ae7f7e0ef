"""Session titles (pure): the first message's first line, given as soon as the message is
recorded, and the request that asks the model for a better one from the first exchange."""

TITLE_CHARS = 60
TITLE_CALL_ID = "/title"
"""The `message_id` of a session's title call in `model_calls` (no client id has a `/`)."""
TITLE_MAX_TOKENS = 24
QUOTES = "\"'`*#_ \u201c\u201d\u2018\u2019\u00ab\u00bb"
"""Quotes (straight and curly), Markdown marks and spaces around a title."""
EXCHANGE_CHARS = 2000
"""Of the question and of the answer, at most this much goes into the title request."""
INSTRUCTION = (
    "Reply with a title of at most six words for the conversation below, in its language, "
    "without quotes or a final period."
)


def title_from(content: str) -> str:
    """A session's title from its first message: its first line, cut at a word within
    `TITLE_CHARS` characters (with an ellipsis when cut)."""
    line = " ".join(content.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0] or line[: TITLE_CHARS - 1]
    return cut.rstrip(",.;:- ") + "…"


def title_request(question: str, answer: str) -> list[dict[str, str]]:
    """The messages that ask a model to title the exchange. The exchange goes into the
    system message, so that the last user message is the instruction alone."""
    exchange = (
        f"{INSTRUCTION}\n\n<question>\n{question[:EXCHANGE_CHARS]}\n</question>\n"
        f"<answer>\n{answer[:EXCHANGE_CHARS]}\n</answer>"
    )
    return [
        {"role": "system", "content": exchange},
        {"role": "user", "content": "Title this conversation."},
    ]


def cleaned(answer: str) -> str:
    """The model's title, made fit to show: its first non-empty line, without a label,
    quotes, Markdown marks or a final period, within `TITLE_CHARS` ("" when nothing is
    left)."""
    line = next((ln for ln in answer.splitlines() if ln.strip()), "")
    line = line.strip().removeprefix("Title:").removeprefix("title:").strip()
    line = line.strip(QUOTES).rstrip(".").strip()
    return title_from(line)
