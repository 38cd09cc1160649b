"""
The JavaScript client (clients/js) run by Node.js against a real server, and its types by tsc.

Node's own test runner runs clients/js/test/ with the server's address in
USERSITE_URL. TypeScript comes from npm (the version clients/js/package-lock.json
pins); where npm cannot install it the type checks are skipped with that
reason, except under CI or USERSITE_REQUIRE_NODE=1, where they fail.
"""

import hashlib
import os
import shutil
import subprocess

import pytest

from servers import ROOT

CLIENT = ROOT / "clients" / "js"
DECLARATIONS = CLIENT / "types" / "usersite-client.d.ts"


def node_is_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("USERSITE_REQUIRE_NODE") == "1"


def skip_or_fail(reason: str):
    if node_is_required():
        pytest.fail(f"CI or USERSITE_REQUIRE_NODE=1, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> list[str]:
    """The command that runs Node.js 20 or later with a global WebSocket."""
    path = shutil.which("node")
    if path is None:
        skip_or_fail("there is no node on PATH (Debian's nodejs)")
    major = int(subprocess.check_output([path, "--version"], text=True).strip("v\n").split(".")[0])
    if major < 20:
        skip_or_fail(f"the client needs Node.js 20 or later; this one is {major}")
    # Node 22 has WebSocket built in; Node 20 behind this flag.
    has_websocket = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    builtin = subprocess.run([path, "-e", has_websocket], check=False).returncode == 0
    return [path] if builtin else [path, "--experimental-websocket"]


@pytest.fixture(scope="module")
def tsc(node) -> list[str]:
    """TypeScript's compiler; ``npm ci`` installs it unless node_modules has what the lock pins."""
    npm = shutil.which("npm")
    if npm is None:
        skip_or_fail("there is no npm on PATH (Debian's npm) to install TypeScript")
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    stamp = CLIENT / "node_modules" / ".usersite-installed"
    if not (stamp.exists() and stamp.read_text() == lock):
        install = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--update-notifier=false"],
            cwd=CLIENT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if install.returncode != 0:
            skip_or_fail(f"npm ci could not install TypeScript:\n{install.stderr[-2000:]}")
        stamp.write_text(lock)
    return [node[0], str(CLIENT / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(CLIENT)]


def test_the_js_client_passes_its_node_tests_against_a_real_server(node, start_server):
    server = start_server("uvicorn")
    run = subprocess.run(
        [*node, "--test", "test/"],
        cwd=CLIENT, env={**os.environ, "USERSITE_URL": server.url},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = f"{run.stdout[-12000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, report
    # The server tests skip themselves without USERSITE_URL: none may skip here.
    assert "# skipped 0" in run.stdout, report


def test_the_js_clients_jsdoc_types_check(tsc):
    run = subprocess.run(tsc, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_published_declarations_are_the_ones_the_jsdoc_makes(tsc, tmp_path):
    """types/ is what TypeScript users read: ``npm run types`` writes it again from the JSDoc."""
    emit = ["--noEmit", "false", "--declaration", "--emitDeclarationOnly", "--outDir", tmp_path]
    run = subprocess.run([*tsc, *emit], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    generated = (tmp_path / DECLARATIONS.name).read_text()
    assert generated == DECLARATIONS.read_text(), "clients/js/types is stale: run npm run types"
