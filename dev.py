#!/usr/bin/env python3
"""
Set up and run usersite with nothing but Python installed.

    python3 dev.py run    # serve on http://127.0.0.1:8000 (SQLite, in-memory channel layer)
    python3 dev.py test   # lint; the client library's tests; every test on the embedded
                          # defaults, then on Redis + PostgreSQL the unit tests and the
                          # end-to-end tests marked `backends`
    python3 dev.py cluster [--processes N] [--port P] [--host H]
                          # check Redis and DATABASE_URL answer, migrate, collect static
                          # files, then N uvicorn processes on ports P..P+N-1 sharing them

All create ``.venv`` and install the pinned requirements whenever they change.
Arguments after ``run`` go to runserver (an address:port); after ``test``, to pytest.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

from servers import ServerProcess  # standard library only, like this file

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
REQUIREMENT_FILES = sorted(ROOT.glob("requirements*.txt"))

# Where the Redis + PostgreSQL run of the suite looks, unless TEST_REDIS_URL or
# TEST_DATABASE_URL say otherwise.
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"


def run(*command, env=None) -> None:
    """Run a command in the project folder; stop with its status if it fails."""
    status = subprocess.call([str(part) for part in command], cwd=ROOT, env=env)
    if status:
        sys.exit(status)


def ensure_venv(requirements: str) -> None:
    """Create .venv and install ``requirements`` unless they are installed as they are now."""
    if not PYTHON.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in REQUIREMENT_FILES)).hexdigest()
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "-r", requirements)
    stamp.write_text(digest)


def environment(**overrides: str | None) -> dict:
    """Return this process's environment with variables set, or removed where None."""
    env = {**os.environ, **{k: v for k, v in overrides.items() if v is not None}}
    for name in [k for k, v in overrides.items() if v is None]:
        env.pop(name, None)
    return env


def serve(args: list[str]) -> None:
    ensure_venv("requirements.txt")
    run(PYTHON, "manage.py", "migrate", "--noinput")
    run(PYTHON, "manage.py", "runserver", *(args or ["127.0.0.1:8000"]))


def test(args: list[str]) -> None:
    ensure_venv("requirements-test.txt")
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "ruff", "format", "--check", ".")
    print("\n== The Python client library's own tests (clients/python)", flush=True)
    run(PYTHON, "-m", "pytest", "clients/python")
    # Three workers (pytest-xdist) on two cores, a module's tests on one: the
    # end-to-end tests wait on servers and sockets much of the time (two workers
    # kept the cores a third idle). `-n 0` in ARGS runs in one process.
    pytest = [PYTHON, "-m", "pytest", "--numprocesses=3", "--dist=loadfile"]
    print("\n== Every test on the embedded defaults: SQLite, in-memory channel layer", flush=True)
    run(*pytest, *args, env=environment(DATABASE_URL=None, REDIS_URL=None))
    print(
        "\n== On Redis (channels-redis) and PostgreSQL: the unit tests, and the end-to-end "
        "tests whose behaviour depends on them",
        flush=True,
    )
    services = environment(
        REDIS_URL=os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL),
        DATABASE_URL=os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL),
    )
    run(*pytest, "-m", "not e2e or backends", *args, env=services)


def cluster(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="dev.py cluster")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--port", type=int, default=8001, help="first port (8001)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 behind a remote balancer")
    options = parser.parse_args(args)
    redis = os.environ.get("REDIS_URL") or os.environ.get("REDIS_SENTINELS")
    if not redis or not os.environ.get("DATABASE_URL"):
        sys.exit(
            "Several processes share one Redis and one database: set REDIS_URL (or "
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER) and DATABASE_URL."
        )
    ensure_venv("requirements.txt")
    # Fail at once, with the cause, rather than after the servers' 30-second wait.
    run(PYTHON, "manage.py", "checkservices")
    run(PYTHON, "manage.py", "migrate", "--noinput")
    # With DEBUG off, WhiteNoise serves only collected files.
    run(PYTHON, "manage.py", "collectstatic", "--noinput", "-v0")
    ports = range(options.port, options.port + options.processes)
    servers = [
        ServerProcess(str(PYTHON), "uvicorn", port, dict(os.environ), None, host=options.host)
        for port in ports
    ]
    try:
        for server in servers:
            server.start()
        print(f"Serving on ports {ports[0]}..{ports[-1]}; Ctrl-C stops them all.", flush=True)
        for server in servers:
            server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


COMMANDS = {"run": serve, "test": test, "cluster": cluster}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
