"""The tools a deployment offers its models: `TOKENWIRE_TOOLS` (JSON) or
`TOKENWIRE_TOOLS_FILE`, a list of `ToolSpec`. With none, models are offered no tools.

A tool is an HTTP endpoint: the worker POSTs a call to it and gives the model what it answers
(see `llm_worker.tool_runs`).
"""

import json
import os
from pathlib import Path
from typing import Any, Self

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, model_validator

TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""What OpenAI-compatible servers accept as a function's name."""
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolSpec(BaseModel):
    """One tool: what the model is told about it, and where it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(default="", max_length=1024)
    """What it does, for the model to decide when to call it."""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(NO_PARAMETERS))
    """A JSON Schema of its arguments (an object); arguments that break it are refused
    before the endpoint is called."""
    url: HttpUrl
    """Its endpoint: POSTed `{name, arguments, call_id, session_id, message_id, user}`."""
    timeout_s: float | None = Field(default=None, gt=0)
    """How long a call may take (None: `TOKENWIRE_TOOL_TIMEOUT_S`)."""
    side_effects: bool = True
    """Whether a call changes something (an order placed, a mail sent): then it runs at most
    once per call, even when its worker dies and the reply is answered again. False (a
    lookup): a reply answered again may call it again."""
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding a token sent as `Authorization: Bearer`; never the
    token itself."""

    @model_validator(mode="after")
    def _a_schema(self) -> Self:
        try:
            jsonschema.Draft202012Validator.check_schema(self.parameters)
        except jsonschema.SchemaError as exc:
            problem = f"tool {self.name!r}: parameters is no JSON Schema: {exc.message}"
            raise ValueError(problem) from None
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a schema of an object")
        return self

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None

    def offered(self) -> dict[str, Any]:
        """The tool as a chat completions request lists it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class Toolbox:
    """The deployment's tools, by name."""

    def __init__(self, specs: list[ToolSpec]) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must differ: {names}")
        self._specs = {spec.name: spec for spec in specs}
        self._offered = [spec.offered() for spec in specs]

    def __bool__(self) -> bool:
        return bool(self._specs)

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def offered(self) -> list[dict[str, Any]]:
        return self._offered

    @classmethod
    def load(cls, specs: list[ToolSpec], path: Path | None) -> "Toolbox":
        """`specs` (`TOKENWIRE_TOOLS`), else the file at `path`; raises `ValueError` for a
        file that is no list of tools."""
        if not specs and path is not None:
            specs = _SPECS.validate_python(json.loads(path.read_text()))
        return cls(specs)


_SPECS: TypeAdapter[list[ToolSpec]] = TypeAdapter(list[ToolSpec])
