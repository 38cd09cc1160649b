"""docs/asyncapi.yaml through AsyncAPI's own parser (@asyncapi/parser, run by Node.js)."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from servers import ROOT

PARSER = Path(__file__).parent / "asyncapi"  # package.json, its lock and check.js
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
ERROR = 0  # the parser's severities: 0 error, 1 warning, 2 information, 3 hint


@pytest.fixture(scope="module")
def parse():
    """Return a function that parses a document and returns the parser's diagnostics."""
    node, npm = shutil.which("node"), shutil.which("npm")
    missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
    if missing:
        if os.environ.get("USERSITE_REQUIRE_NODE") == "1":
            pytest.fail(f"USERSITE_REQUIRE_NODE=1 but there is no {' or '.join(missing)} on PATH")
        pytest.skip("needs Node.js and npm (Debian's nodejs and npm) for AsyncAPI's parser")
    install(npm)

    def parse_(document: Path) -> list[dict]:
        command = [node, "check.js", str(document)]
        run = subprocess.run(command, cwd=PARSER, capture_output=True, text=True, timeout=120)
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: diagnostics with errors
        return json.loads(run.stdout)

    return parse_


def install(npm: str) -> None:
    """Install the pinned parser with ``npm ci``, unless node_modules holds what the lock pins."""
    lock = hashlib.sha256((PARSER / "package-lock.json").read_bytes()).hexdigest()
    stamp = PARSER / "node_modules" / ".usersite-installed"
    if stamp.exists() and stamp.read_text() == lock:
        return
    run = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--update-notifier=false"],
        cwd=PARSER, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, f"npm ci failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    stamp.write_text(lock)


def errors(diagnostics: list[dict]) -> list[dict]:
    return [diagnostic for diagnostic in diagnostics if diagnostic["severity"] == ERROR]


def test_asyncapis_parser_finds_no_error_in_the_document(parse):
    assert errors(parse(DOCUMENT)) == []


def test_asyncapis_parser_reports_a_document_that_breaks_the_specification(parse, tmp_path):
    # AsyncAPI 2's vocabulary in a 3.0 document: a mistake the check must catch.
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(DOCUMENT.read_text().replace("    action: send\n", "    action: publish\n"))
    found = errors(parse(broken))
    assert any(error["path"].startswith("operations.") for error in found), found
