"""The AsyncAPI documents in docs/asyncapi/ say what the code does (`make asyncapi` rewrites
them)."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from shared import subjects

ROOT = Path(__file__).resolve().parent.parent


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "asyncapi_script", ROOT / "scripts" / "asyncapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_documents_match_the_code() -> None:
    for name, text in generator().documents().items():
        checked_in = ROOT / "docs" / "asyncapi" / name
        assert checked_in.read_text() == text, f"docs/asyncapi/{name} is stale: run `make asyncapi`"


def test_the_contract_names_every_subject_family() -> None:
    doc = json.loads((ROOT / "docs" / "asyncapi" / "tokenwire.json").read_text())
    addresses = {channel["address"] for channel in doc["channels"].values()}
    sid = "{session_id}"
    for build in (
        subjects.chat_in,
        subjects.out_start,
        subjects.out_token,
        subjects.out_end,
        subjects.out_error,
        subjects.out_call,
        subjects.system,
        subjects.cancel,
        subjects.typing,
        subjects.presence,
    ):
        assert build(sid) in addresses
    assert subjects.chat_in(sid, "{model}") in addresses
    for service in (
        subjects.SVC_SESSION_CREATE,
        subjects.SVC_SESSION_GET,
        subjects.SVC_SESSION_LIST,
        subjects.SVC_SESSION_UPDATE,
        subjects.SVC_MEMBER_ADD,
        subjects.SVC_MEMBER_REMOVE,
        subjects.SVC_HISTORY,
        subjects.SVC_USAGE,
    ):
        assert service in addresses
