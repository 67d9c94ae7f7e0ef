"""The code stays readable: no function in `services/`, `shared/` or `clients/` longer than a
screen (60 lines), no module longer than 300, and every module says what it is for."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path
    for base in ("services", "shared", "clients")
    for path in (ROOT / base).rglob("*.py")
    if ".venv" not in path.parts
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_fit_on_a_screen_and_modules_stay_small(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    assert len(source.splitlines()) <= 300
    too_long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert too_long == []
    assert ast.get_docstring(tree), "a module docstring states its responsibility"
