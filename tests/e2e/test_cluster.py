"""
``dev.py cluster`` as README.md's "Several server processes" runs it.

The same environment as the try-out there, on a PostgreSQL database and a
Redis server of its own, and free ports.
"""

import asyncio
import os
import re
import secrets
import signal
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from servers import ROOT, free_port, free_port_range
from tests.e2e.clients import manage_shell, next_list, server_at

STATIC_SCRIPT = ROOT / "users" / "static" / "users" / "live-list.js"
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        not DATABASE_URL.startswith("postgres") or not REDIS_URL,
        reason="follows README.md's cluster try-out: needs DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
]


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def readme_environment(database_url: str, redis_url: str, static_root) -> dict:
    """The try-out's variables, over this process's environment (the suite's own removed)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "USERS_ANONYMOUS_READS": "true",
        "USERS_ANONYMOUS_WRITES": "false",
        "HTTPS": "false",
        "STATIC_ROOT": str(static_root),  # not the project's staticfiles/
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("LOG_FORMAT", "FORWARDED_ALLOW_IPS", "TRUST_X_FORWARDED_PROTO"):
        env.pop(name, None)
    return env


@pytest.fixture
def cluster_env(tmp_path, own_redis):
    """A fresh database (created as README.md says) and an empty Redis of its own."""
    name = f"usersite_e2e_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield readme_environment(
            with_path(DATABASE_URL, f"/{name}"), own_redis.url, tmp_path / "static"
        )
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def start_cluster(env: dict, first_port: int, log) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "dev.py", "cluster", "--processes", "2", "--port", str(first_port)],
        cwd=ROOT, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches dev.py and its servers, as in a terminal
    )  # fmt: skip


async def healthy(http: httpx.AsyncClient, server) -> bool:
    try:
        return (await http.get(f"{server.url}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


# What a clean run must not print: Python's warnings ("...: Warning: ...",
# "DeprecationWarning"), log records at WARNING or above, tracebacks.
ALARMING = re.compile(r'Warning|"level": "(WARNING|ERROR|CRITICAL)"|Traceback')
# The one the test asks for: the anonymous write it sends on purpose.
REFUSED_WRITE = '"logger": "django.request", "message": "Unauthorized: /api/v1/users"'


async def test_the_readme_cluster_serves_the_page_static_files_rest_and_sockets_quietly(
    cluster_env, tmp_path
):
    first_port = free_port_range(2)
    a, b = server_at(first_port), server_at(first_port + 1)
    log_path = tmp_path / "cluster.log"
    with log_path.open("wb") as log:
        cluster = await start_cluster(cluster_env, first_port, log)
    try:
        async with httpx.AsyncClient() as http:
            async with asyncio.timeout(90):  # a fresh database: every migration runs
                while not (await healthy(http, a) and await healthy(http, b)):
                    assert cluster.returncode is None, log_path.read_text()
                    await asyncio.sleep(0.2)
            for server in (a, b):
                page = await http.get(f"{server.url}/")
                script = await http.get(f"{server.url}/static/users/live-list.js")
                users = await http.get(f"{server.url}/api/v1/users")
                assert (page.status_code, script.status_code) == (200, 200)
                assert script.content == STATIC_SCRIPT.read_bytes()
                assert users.json() == {"users": []}
            anonymous_write = await http.post(f"{a.url}/api/v1/users", json={"name": "Ann"})
        assert anonymous_write.status_code == 401  # USERS_ANONYMOUS_WRITES=false
        async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
            assert (await next_list(on_a), await next_list(on_b)) == ([], [])
            # A change made anywhere (here the ORM in a shell) reaches both processes.
            manage_shell(cluster_env, "User.objects.create(name='Ann')")
            assert [user["name"] for user in await next_list(on_a)] == ["Ann"]
            assert [user["name"] for user in await next_list(on_b)] == ["Ann"]
    finally:
        if cluster.returncode is None:
            os.killpg(cluster.pid, signal.SIGINT)
        await asyncio.wait_for(cluster.wait(), 30)
    alarming = [line for line in log_path.read_text().splitlines() if ALARMING.search(line)]
    assert [REFUSED_WRITE in line for line in alarming] == [True], "\n".join(alarming)


def unreachable_database(env: dict) -> tuple[dict, list[str]]:
    name = f"usersite_e2e_missing_{uuid.uuid4().hex[:10]}"
    url = with_path(DATABASE_URL, f"/{name}")
    return {**env, "DATABASE_URL": url}, [f'database "{name}" does not exist', "createdb "]


def unreachable_postgres(env: dict) -> tuple[dict, list[str]]:
    url = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(netloc=f"127.0.0.1:{free_port()}"))
    return {**env, "DATABASE_URL": url}, ["DATABASE_URL: ", "Connection refused"]


def unreachable_redis(env: dict) -> tuple[dict, list[str]]:
    url = f"redis://127.0.0.1:{free_port()}/0"
    return {**env, "REDIS_URL": url}, ["REDIS_URL: ", "Connection refused"]


@pytest.mark.parametrize(
    "break_it", [unreachable_database, unreachable_postgres, unreachable_redis]
)
async def test_the_cluster_stops_at_once_naming_what_it_cannot_reach(break_it, tmp_path):
    env, causes = break_it(readme_environment(DATABASE_URL, REDIS_URL, tmp_path / "static"))
    started = time.monotonic()
    log_path = tmp_path / "cluster.log"
    with log_path.open("wb") as log:
        cluster = await start_cluster(env, free_port_range(2), log)
    try:
        status = await asyncio.wait_for(cluster.wait(), 30)
    finally:
        if cluster.returncode is None:
            os.killpg(cluster.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert status != 0
    assert time.monotonic() - started < 15, "not at once: the pool's 30-second wait?"
    for cause in causes:
        assert cause in output
