"""
A real server process for end-to-end tests.

Each server runs in a subprocess on a free loopback port with a database of
its own (an SQLite file, or a fresh PostgreSQL database when DATABASE_URL
names PostgreSQL) and the channel layer REDIS_URL selects, like a deployment.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "e2e-admin-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process and its addresses."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/api/v1/users/ws"

    def wait_until_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/api/v1/users", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"the server did not answer within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def server_env(tmp_path_factory):
    """The environment of a server: its own migrated database with an admin account."""
    test_url = os.environ.get("DATABASE_URL", "")
    with _own_database(test_url, tmp_path_factory.mktemp("e2e")) as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
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


@pytest.fixture(scope="session")
def start_server(server_env, tmp_path_factory):
    """Start servers with a command template; all are stopped at the end of the session."""
    servers = []

    def start(command: list[str]) -> Server:
        port = free_port()
        log = tmp_path_factory.mktemp("server") / "server.log"
        args = [part.format(port=port, python=sys.executable) for part in command]
        with log.open("w") as output:
            process = subprocess.Popen(
                args, cwd=ROOT, env=server_env, stdout=output, stderr=subprocess.STDOUT
            )
        server = Server(process, port, log)
        servers.append(server)
        server.wait_until_ready()
        return server

    yield start
    for server in servers:
        server.stop()


# Commands of the two servers; start_server fills in {python} and a free {port}.
ASGI_APP = "usersite.asgi:application"
DAPHNE = ["{python}", "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", ASGI_APP]
RUNSERVER = ["{python}", "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"]


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """One daphne process, as deployed."""
    return start_server(DAPHNE)


@pytest.fixture(autouse=True)
def empty_channel_layer():
    """Leave the channel layer alone: the server under test owns it (overrides the suite's)."""
