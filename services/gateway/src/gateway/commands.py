"""Chat commands, without I/O: a `message` whose content starts with `/` is a command, never
sent to the model. Here: which commands there are, what their arguments mean, and the words
of their results and of the system messages they post. `gateway.command_runner` runs them.

`//text` is no command: it is sent as the message `/text`.
"""

from collections import deque
from dataclasses import dataclass
from typing import Literal

from shared.frames import CommandResultFrame, ProgressFrame
from shared.models import MAX_TEMPERATURE

Setting = Literal["model", "system", "temperature", "max_tokens", "title"]
DEFAULT = "default"
"""The argument that puts a setting back to its default."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    usage: str
    summary: str


SPECS: tuple[Spec, ...] = (
    Spec("help", "/help", "lists every command"),
    Spec("model", "/model [id | default]", "shows the model and the others; with an id, uses it"),
    Spec("system", "/system [text | default]", "shows the system prompt; with text, replaces it"),
    Spec("temperature", "/temperature [0-2 | default]", "shows or sets the temperature"),
    Spec("max_tokens", "/max_tokens [n | default]", "shows or sets a reply's length at most"),
    Spec("title", "/title [text]", "shows the title; with text, renames the session"),
    Spec("retry", "/retry", "regenerates the last reply, as a new version of it"),
    Spec("clear", "/clear", "later replies no longer see the turns before (history keeps them)"),
    Spec("usage", "/usage", "this session's tokens and cost"),
    Spec("members", "/members", "who is in the session, their roles, and who is here now"),
    Spec("invite", "/invite <user_id> [viewer]", "adds a member (or a viewer, who only reads)"),
    Spec("export", "/export", "the session as Markdown"),
)
_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Show:
    setting: Setting


@dataclass(frozen=True, slots=True)
class Change:
    setting: Setting
    value: str | float | int | None
    """None: back to the default."""


@dataclass(frozen=True, slots=True)
class Invite:
    user_id: str
    role: Literal["member", "viewer"]


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without arguments: `retry`, `clear`, `usage`, `members`, `export`."""

    name: Literal["retry", "clear", "usage", "members", "export"]


Request = Help | Show | Change | Invite | Simple


@dataclass(frozen=True, slots=True)
class Invocation:
    name: str
    """The command as typed (lower case), known or not."""
    request: Request | str
    """What it asks, or why it cannot be run (what would work)."""


def is_command(content: str) -> bool:
    return content.startswith("/") and not content.startswith("//")


def unescaped(content: str) -> str:
    """`//text` → `/text`: the message a leading `//` stands for."""
    return content[1:] if content.startswith("//") else content


def parse(content: str) -> Invocation:
    """The command in `content` (which `is_command`)."""
    head, _, rest = content[1:].partition(" ")
    name, args = head.strip().lower(), rest.strip()
    spec = _BY_NAME.get(name)
    if spec is None:
        return Invocation(name, f"unknown command /{name}; /help lists them")
    request = _request(name, args)
    if isinstance(request, str):
        return Invocation(name, f"{request}; usage: {spec.usage}")
    return Invocation(name, request)


def _request(name: str, args: str) -> Request | str:
    match name:
        case "help":
            return Help()
        case "model" | "system" | "temperature" | "max_tokens" | "title":
            return _setting(name, args)
        case "invite":
            return _invite(args)
        case "retry" | "clear" | "usage" | "members" | "export":
            return Simple(name) if not args else f"/{name} takes no argument"
    return f"unknown command /{name}"


def _setting(name: Setting, args: str) -> Request | str:
    if not args:
        return Show(name)
    if args.lower() == DEFAULT and name != "title":
        return Change(name, None)
    match name:
        case "temperature":
            try:
                value = float(args)
            except ValueError:
                return f"{args!r} is not a number"
            if not 0 <= value <= MAX_TEMPERATURE:
                return f"the temperature is between 0 and {MAX_TEMPERATURE:g}"
            return Change(name, value)
        case "max_tokens":
            if not args.isdigit() or int(args) < 1:
                return f"{args!r} is not a whole number of tokens"
            return Change(name, int(args))
        case "title" if len(args) > 200:
            return "a title has at most 200 characters"
    return Change(name, args)


def _invite(args: str) -> Request | str:
    parts = args.split()
    if not parts or len(parts) > 2 or len(parts[0]) > 128:
        return "name one user"
    if len(parts) == 2 and parts[1].lower() not in ("member", "viewer"):
        return f"the role is member or viewer, not {parts[1]!r}"
    role: Literal["member", "viewer"] = "viewer" if parts[1:] == ["viewer"] else "member"
    return Invite(parts[0], role)


def help_text() -> str:
    lines = [f"{spec.usage} — {spec.summary}" for spec in SPECS]
    lines.append("Start a message with // to send one that begins with /.")
    return "\n".join(lines)


def help_data() -> dict[str, object]:
    """For clients' autocomplete."""
    return {"commands": [{"name": s.name, "usage": s.usage, "summary": s.summary} for s in SPECS]}


def note(change: Change, by: str, label: str) -> str:
    """The system message a change posts; `label` names the new value for people (a model's
    label, or the default model's)."""
    value = change.value
    match change.setting:
        case "model":
            return f"{by} switched the model to {label}"
        case "system":
            return f"{by} {'removed' if value is None else 'changed'} the system prompt"
        case "title":
            return f"{by} renamed the session to “{value}”"
    what = change.setting.replace("_", " ")
    return f"{by} set the {what} to {'the default' if value is None else value}"


def result(
    message_id: str, command: str, ok: bool, text: str, data: dict[str, object] | None = None
) -> str:
    frame = CommandResultFrame(message_id=message_id, command=command, ok=ok, text=text, data=data)
    return frame.model_dump_json()


def progress(message_id: str, command: str, percent: int, label: str) -> str:
    frame = ProgressFrame(message_id=message_id, command=command, percent=percent, label=label)
    return frame.model_dump_json()


class Pace:
    """At most `limit` commands in any `window_s` (one connection's): the rest are refused."""

    def __init__(self, limit: int = 20, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True
