"""`.env.example` lists every setting with its default and meaning, as the code has them."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "env_example", ROOT / "scripts" / "env_example.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_file_is_what_the_settings_say() -> None:
    text = generator().render()
    assert (ROOT / ".env.example").read_text() == text, ".env.example is stale: make env-example"


def test_every_setting_is_listed_with_what_it_means() -> None:
    env = generator()
    lines = (ROOT / ".env.example").read_text().splitlines()
    for _, settings in env.SECTIONS:
        notes = env._docstrings(settings)
        for name in settings.model_fields.keys() - env._inherited(settings):
            assert notes.get(name), f"{settings.__name__}.{name} has no docstring"
            variable = env._variable(settings, name, settings.model_fields[name])
            at = next(i for i, line in enumerate(lines) if line.startswith(f"# {variable}="))
            meaning = lines[at - 1]  # the line above says what it means
            assert meaning.startswith("# "), variable
            assert not re.match(r"# [A-Z_]+=", meaning), variable
    assert "# TOKENWIRE_JWT_SECRET=\n" in "\n".join(lines) + "\n"  # no secret has a default
