"""Write `.env.example` from the settings classes (`make env-example`): every setting, its
default and what it means (the field's docstring), service by service, each line commented out
so that a copy changes nothing until a line is uncommented.

`tests/test_env_example.py` fails when the checked-in file differs from what the code says.
"""

import ast
import inspect
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from fake_llm.settings import FakeLLMSettings
from gateway.settings import GatewaySettings
from llm_worker.settings import WorkerSettings
from persistence.settings import PersistenceSettings
from shared.settings import TokenwireSettings

OUT = Path(__file__).resolve().parent.parent / ".env.example"
SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Every service", TokenwireSettings),
    ("Gateway", GatewaySettings),
    ("LLM worker", WorkerSettings),
    ("Persistence", PersistenceSettings),
    ("Fake model (make run, tests, benchmarks)", FakeLLMSettings),
]
HEADER = """\
# tokenwire's settings: every one, with its default and meaning, generated from the settings
# classes by `make env-example` (do not edit by hand). Every line is commented out: copy this
# file to `.env`, or export what you change, and uncomment the lines you set.
"""


def render() -> str:
    parts = [HEADER]
    for title, settings in SECTIONS:
        source = inspect.getsourcefile(settings)
        where = Path(source).resolve().relative_to(OUT.parent) if source else ""
        parts.append(f"\n# === {title} ({where}) ===\n")
        notes = _docstrings(settings)
        own = settings.model_fields.keys() - _inherited(settings)
        for name in [n for n in settings.model_fields if n in own]:
            field = settings.model_fields[name]
            parts.append(_entry(settings, name, field, notes.get(name, "")))
    return "".join(parts)


def _inherited(settings: type[BaseModel]) -> set[str]:
    base = settings.__mro__[1]
    return set(base.model_fields) if issubclass(base, BaseModel) else set()


def _entry(settings: type[BaseModel], name: str, field: FieldInfo, note: str) -> str:
    lines = [f"# {line}".rstrip() for line in note.splitlines()] if note else []
    lines.append(f"# {_variable(settings, name, field)}={_default(field)}")
    return "\n".join(lines) + "\n\n"


def _variable(settings: type[BaseModel], name: str, field: FieldInfo) -> str:
    if isinstance(field.validation_alias, AliasChoices):
        first = field.validation_alias.choices[0]
        return str(first)
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value) if value else ""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


def _docstrings(settings: type[BaseModel]) -> dict[str, str]:
    """Each field's docstring (the string right after its annotated assignment)."""
    tree = ast.parse(inspect.getsource(settings))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    notes: dict[str, str] = {}
    for field, after in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            notes[field.target.id] = inspect.cleandoc(after.value.value)
    return notes


def main() -> None:
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
