import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.models import Catalogue, ModelSpec, Price, slug
from shared.settings import TokenwireSettings, catalogue

TWO = [
    {"name": "gpt-4o-mini", "price": {"input": 0.15, "output": 0.6}, "context_tokens": 128000},
    {"id": "local", "name": "llama3.1:8b", "base_url": "http://127.0.0.1:8080/v1"},
]


def test_without_a_catalogue_there_is_one_model_with_the_old_budgets() -> None:
    models = catalogue(TokenwireSettings(llm_model="gpt-4o-mini", max_context_tokens=6000))
    (model,) = models.models
    assert (model.id, model.name, model.label) == ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini")
    assert model.max_tokens == 1024
    assert model.prompt_budget(model.max_tokens) == 6000  # as TOKENWIRE_MAX_CONTEXT_TOKENS said
    assert models.default is model
    assert models.pool(None) == models.pool("gpt-4o-mini") == ""


def test_the_catalogue_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_MODELS", json.dumps(TWO))
    models = catalogue(TokenwireSettings())
    assert models.ids() == ["gpt-4o-mini", "local"]
    assert models.default.price == Price(input=0.15, output=0.6)
    assert models.get("local") is not None
    assert models.pool("local") == "local"
    assert models.pool("gpt-4o-mini") == ""
    assert models.get("nope") is None


def test_the_catalogue_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(TWO))
    assert catalogue(TokenwireSettings(models_file=path)).ids() == ["gpt-4o-mini", "local"]
    path.write_text('[{"nom": "x"}]')
    with pytest.raises(ValidationError):
        catalogue(TokenwireSettings(models_file=path))


def test_a_name_becomes_an_id_a_subject_can_hold() -> None:
    assert slug("llama3.1:8b") == "llama3-1-8b"
    assert slug("meta-llama/Llama-3-8B") == "meta-llama-Llama-3-8B"
    assert ModelSpec(name="qwen2.5 7b").id == "qwen2-5-7b"
    with pytest.raises(ValidationError):
        ModelSpec(id="a.b", name="x")


def test_ids_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Catalogue.of(
            [ModelSpec(name="a"), ModelSpec(id="a", name="b")],
            model="x",
            max_tokens=10,
            prompt_tokens=1000,
        )


def test_a_check_says_what_would_work() -> None:
    models = Catalogue.of(
        [ModelSpec.model_validate(m) for m in TWO], model="x", max_tokens=1024, prompt_tokens=8000
    )
    assert models.check(None, None, None) is None
    assert models.check("local", 0.7, 4000) is None
    assert models.check("gpt", None, None) == "no model 'gpt'; the models are: gpt-4o-mini, local"
    assert models.check("local", 2.5, None) == "temperature must be between 0 and 2"
    assert models.check("local", None, 9000) == "max_tokens must be between 1 and 8768 for local"
    assert models.check(None, None, 100_000) is None  # gpt-4o-mini's window is 128,000
