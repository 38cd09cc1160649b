"""
Real server processes for end-to-end tests.

Servers run in subprocesses on free loopback ports with a database of their
own (an SQLite file, or a fresh PostgreSQL database when DATABASE_URL names
PostgreSQL) and the channel layer that REDIS_URL selects, as deployed; or on
a Redis of the test's own (``own_redis``), which a test can restart.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from servers import NO_WRITE_LIMITS, ROOT, ServerProcess, free_port

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "e2e-admin-password"

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Mark every test of this folder ``e2e``: the Redis + PostgreSQL run skips most of them."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs REDIS_URL: the in-memory channel layer cannot reach another process",
)


@pytest.fixture(scope="session")
def server_env(tmp_path_factory):
    """The environment of the servers: their own migrated database with an admin account."""
    with _own_database(os.environ.get("DATABASE_URL", ""), tmp_path_factory.mktemp("db")) as url:
        env = {**os.environ, **NO_WRITE_LIMITS, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [*manage, "createsuperuser", "--noinput", "--username", ADMIN_USERNAME, "--email", ""],
            cwd=ROOT,
            env={**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
            check=True,
        )
        yield env


@contextmanager
def _own_database(test_url: str, folder: Path):
    if not test_url.startswith("postgres"):
        yield f"sqlite:///{folder / 'db.sqlite3'}"
        return
    name = f"usersite_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(test_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(test_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(test_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Launcher:
    """Start servers on the shared database; stop them all at the end."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.started = env, logs, []

    def __call__(self, kind: str = "uvicorn", **env) -> ServerProcess:
        port = free_port()
        server = ServerProcess(
            sys.executable, kind, port, {**self.env, **env}, self.logs / f"{kind}-{port}.log"
        )
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture(scope="session")
def session_launcher(server_env, tmp_path_factory):
    launcher = Launcher(server_env, tmp_path_factory.mktemp("logs"))
    yield launcher
    launcher.stop_all()


@pytest.fixture
def start_server(server_env, tmp_path):
    """Start servers that live for one test (``start_server(kind, **environment)``)."""
    launcher = Launcher(server_env, tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="session", params=["uvicorn", "daphne"])
def server(request, session_launcher) -> ServerProcess:
    """One server process, as deployed: uvicorn, and daphne as runserver uses it."""
    return session_launcher(request.param)


@pytest.fixture(autouse=True)
def no_throttle_counts():
    """Leave the cache alone: with Redis it is the servers' (overrides the suite's)."""


@pytest.fixture(autouse=True)
def empty_channel_layer():
    """Leave the channel layer alone: the servers under test own it (overrides the suite's)."""


class RedisServer:
    """A Redis of the test's own, without persistence, so a restart loses every key."""

    def __init__(self, folder):
        self.port, self.folder, self.process = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (Debian's redis-server) to restart a Redis of its own")
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    if redis.process.poll() is None:
        redis.stop()


# Two processes where the channel layer (Redis) reaches both; one otherwise.
PROCESSES = 2 if os.environ.get("REDIS_URL") else 1


@pytest.fixture(scope="module")
def servers(server_env, tmp_path_factory) -> list:
    """The module's uvicorn processes, started at once; each test reads its part of their logs."""
    launcher = Launcher(server_env, tmp_path_factory.mktemp("logs"))
    try:
        with ThreadPoolExecutor(PROCESSES) as pool:
            started = list(pool.map(lambda _: launcher("uvicorn"), range(PROCESSES)))
        yield started
    finally:
        launcher.stop_all()


@pytest.fixture
def log_marks(servers) -> list[int]:
    """Where each server's log stood when the test began."""
    return [len(server.log.read_text(errors="replace")) for server in servers]


# uvicorn closes a connection idle for 5 s; a client reusing it at that moment gets a
# ReadError. Clients here drop their idle connections well before.
KEEP_ALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2)


@pytest.fixture
async def rest(servers) -> list:
    """One HTTP client per server, in the order of ``servers``."""
    clients = [
        httpx.AsyncClient(base_url=server.url, timeout=30, limits=KEEP_ALIVE) for server in servers
    ]
    yield clients
    for client in clients:
        await client.aclose()
