"""The JavaScript client module's JSDoc types hold: tsc checks `static/client.js` in strict
mode (no build: the page loads the file as it is)."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TSC = ROOT / "tests" / "js" / "node_modules" / ".bin" / "tsc"
CLIENT = ROOT / "services" / "gateway" / "src" / "gateway" / "static" / "client.js"


def test_the_client_modules_jsdoc_types_check_in_strict_mode() -> None:
    assert shutil.which("node"), "Node.js is needed to type-check the client module"
    assert TSC.exists(), "run: make js-tools"
    options = ["--noEmit", "--allowJs", "--checkJs", "--strict", "--target", "es2022"]
    result = subprocess.run(
        [TSC, *options, "--module", "es2022", "--lib", "es2022,dom", CLIENT],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
