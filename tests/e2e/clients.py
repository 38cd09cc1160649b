"""Clients of a real server: WebSocket (the websockets library) and HTTP (httpx)."""

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx

from servers import ROOT, SOCKET_PATH, http_url, ws_url
from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.helpers import list_frame

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def server_at(port: int) -> SimpleNamespace:
    """The addresses of a server that something else started."""
    return SimpleNamespace(port=port, url=http_url(port), ws_url=ws_url(port))


def unique_name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


async def next_list(ws, timeout: float = 5) -> list:
    """Receive one frame on a real socket (the websockets library): a list."""
    return list_frame(await asyncio.wait_for(ws.recv(), timeout))


async def database_list(server) -> list:
    """The list as the database has it now, read through REST."""
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{server.url}/api/v1/users")).json()["users"]


async def rest_create(server, name: str, http: httpx.AsyncClient | None = None) -> dict:
    """Create a user through REST, on ``http`` or a client of its own."""
    if http is None:
        async with httpx.AsyncClient() as own:
            return await rest_create(server, name, own)
    response = await http.post(f"{server.url}/api/v1/users", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def csrf(page: httpx.Response) -> dict:
    return {"csrfmiddlewaretoken": CSRF_FIELD.search(page.text)[1]}


@asynccontextmanager
async def admin_session(server):
    """Yield an HTTP client logged in to the admin through its login form."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.get("/admin/login/")
        response = await http.post(
            "/admin/login/?next=/admin/",
            data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, **csrf(login)},
        )
        assert response.status_code == 302, response.text
        yield http


async def admin_create(http: httpx.AsyncClient, name: str) -> None:
    form = await http.get("/admin/users/user/add/")
    response = await http.post(
        "/admin/users/user/add/", data={"name": name, "email": "", "_save": "Save", **csrf(form)}
    )
    assert response.status_code == 302, response.text


class ListWatcher:
    """Record every list frame a socket receives, in the background."""

    def __init__(self, ws):
        self.ws, self.lists = ws, []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self.watch())

    async def watch(self) -> None:
        async for frame in self.ws:
            self.lists.append(json.loads(frame))
            self.changed.set()

    async def wait_for(self, expected: list, timeout: float = 10) -> None:
        """Wait until the newest list is ``expected``; fail with the last one seen otherwise."""
        async with asyncio.timeout(timeout):
            while not self.lists or self.lists[-1] != expected:
                self.changed.clear()
                await self.changed.wait()

    @staticmethod
    async def all_end_on(watchers: list["ListWatcher"], expected: list, timeout: float = 10):
        """Wait until every watcher holds ``expected``, none having gone back on the way."""
        for watcher in watchers:
            await watcher.wait_for(expected, timeout)
            watcher.assert_never_went_back()

    def assert_never_went_back(self) -> None:
        """With creates only, every list must hold all users of the one before it."""
        for older, newer in zip(self.lists, self.lists[1:], strict=False):
            assert {u["id"] for u in older} <= {u["id"] for u in newer}, "a list went back"


def open_never_reading_socket(server) -> socket.socket:
    """
    Complete a WebSocket handshake on a raw socket with a tiny receive buffer.

    The caller then never reads, so the server's writes back up at once.
    """
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        f"GET {SOCKET_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        response += raw.recv(1)  # byte by byte: leave the first frame unread
    assert response.startswith(b"HTTP/1.1 101"), response
    return raw


def read_until_closed(raw: socket.socket, timeout: float = 10) -> int:
    """Read what the server sent until it closes the connection; return the byte count."""
    raw.settimeout(timeout)
    total = 0
    while chunk := raw.recv(1 << 16):
        total += len(chunk)
    return total


def manage_shell(env: dict, code: str) -> None:
    """Run ``code`` in ``manage.py shell`` on the database of ``env``, with User imported."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", f"from users.models import User; {code}"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip


@contextmanager
def long_named_users(server_env: dict, count: int, name_length: int):
    """Insert ``count`` users with long names into the servers' database, for one test."""
    name = "x" * name_length
    manage_shell(
        server_env, f"User.objects.bulk_create(User(name={name!r}) for _ in range({count}))"
    )
    try:
        yield
    finally:
        manage_shell(server_env, f"User.objects.filter(name={name!r}).delete()")


def database_of_numbered_users(server_env: dict, folder: Path, count: int) -> dict:
    """
    Make an SQLite database in ``folder`` holding users "User 1" to "User <count>"
    (ids 1 to ``count``); return the environment of servers on it.

    A database of its own: deleting that many users from the shared one, each
    leaving a tombstone, takes longer than the test.
    """
    env = {**server_env, "DATABASE_URL": f"sqlite:///{folder / 'numbered-users.sqlite3'}"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    manage_shell(
        env, f"User.objects.bulk_create(User(name=f'User {{n}}') for n in range(1, {count} + 1))"
    )
    return env


async def scrape_metrics(server, token: str) -> dict:
    """Read a server's /metrics with its METRICS_TOKEN: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.status_code
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels) -> float:
    """One sample's value from ``scrape_metrics``; 0 when absent (a counter never touched)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
