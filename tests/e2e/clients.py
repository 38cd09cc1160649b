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
from collections import Counter
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import httpx
import websockets
from websockets.asyncio.client import connect

from servers import ROOT, SOCKET_PATH, http_url, ws_url
from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.helpers import list_frame

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ADMIN_CHANGE_PATH = re.compile(r"/admin/users/user/(\d+)/change/")


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
    # Not httpx's 5 s: a server fanning a burst out to 500 sockets, beside
    # another test's servers on two cores, took longer to accept (CI, loaded).
    async with httpx.AsyncClient(timeout=30) as http:
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


def manage(server_env: dict, *arguments: str, **env) -> str:
    """Run a management command on the servers' database; return what it printed."""
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT, env={**server_env, **env}, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout  # fmt: skip


def manage_shell(server_env: dict, code: str, **env) -> str:
    """Run Python ``code`` in ``manage.py shell`` on the servers' database, with User imported."""
    return manage(server_env, "shell", "-c", f"from users.models import User; {code}", **env)


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


async def admin_create_returning_id(http: httpx.AsyncClient, name: str, email: str = "") -> str:
    """Add a user through the admin's add form; return its id, from the redirect to its form."""
    form = await http.get("/admin/users/user/add/")
    response = await http.post(
        "/admin/users/user/add/",
        data={"name": name, "email": email, "_continue": "Save", **csrf(form)},
    )
    assert response.status_code == 302, response.text
    return ADMIN_CHANGE_PATH.fullmatch(response.headers["location"])[1]


async def admin_update(http: httpx.AsyncClient, user_id: str, name: str, email: str = "") -> None:
    """Save a user's change form in the admin."""
    path = f"/admin/users/user/{user_id}/change/"
    form = await http.get(path)
    response = await http.post(
        path, data={"name": name, "email": email, "_save": "Save", **csrf(form)}
    )
    assert response.status_code == 302, response.text


async def admin_delete(http: httpx.AsyncClient, user_id: str) -> None:
    """Confirm a user's deletion in the admin."""
    path = f"/admin/users/user/{user_id}/delete/"
    form = await http.get(path)
    response = await http.post(path, data={"post": "yes", **csrf(form)})
    assert response.status_code == 302, response.text


# -- protocol v2 ----------------------------------------------------------------

V2_SUBPROTOCOL = "users.v2"
USER_FIELDS = {"id", "name", "email"}
FRAME_FIELDS = {
    "snapshot": {"type", "epoch", "version", "users"},
    "changes": {"type", "epoch", "from", "version", "upserted", "deleted"},
}


def v2_url(server, resume: tuple[str, int] | None = None) -> str:
    """The socket's URL, resuming from (epoch, version) if given."""
    if resume is None:
        return server.ws_url
    epoch, version = resume
    return f"{server.ws_url}?{urlencode({'epoch': epoch, 'version': version})}"


def connect_v2(server, resume: tuple[str, int] | None = None, token: str | None = None, **kwargs):
    """Open a protocol v2 socket (``await`` it or use ``async with``), with a token if given."""
    subprotocols = [V2_SUBPROTOCOL, *([f"token.{token}"] if token else [])]
    return connect(v2_url(server, resume), subprotocols=subprotocols, **kwargs)


def check_user(user) -> None:
    assert isinstance(user, dict), user
    assert user.keys() == USER_FIELDS, user
    assert all(isinstance(value, str) for value in user.values()), user


def brief(frame, limit: int = 400) -> str:
    """A frame for a failure message: the start of its JSON."""
    text = json.dumps(frame, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def by_id(users) -> list:
    """Users ordered by their integer id, as lists are."""
    return sorted(users, key=lambda user: int(user["id"]))


class ChangesWatcher:
    """
    A protocol v2 client that rebuilds the list only from the frames it receives.

    Every change set must start where the list it holds stands: its epoch, and
    ``from`` equal to its version; a failure ends the watcher and is raised by
    the next wait. Acks and errors are kept apart from the list, so they may
    come before or after the change set that carries the same change.
    Error frames are kept in ``errors``, and with the answers to their request
    id when they carry one.
    """

    def __init__(self, ws, holds: "ChangesWatcher | None" = None):
        self.ws, self.frames, self.errors, self.replies = ws, [], [], []  # replies: acks, errors
        self.answers = {}  # request id: its acks and error frames, in order
        self.asked = {}  # request id: how many answers it had when last sent
        self.epoch, self.version, self.users = None, None, {}
        if holds is not None:  # resuming: it holds the list another watcher had
            self.epoch, self.version, self.users = holds.epoch, holds.version, dict(holds.users)
        self.closed: websockets.ConnectionClosed | None = None
        self.received = asyncio.Event()
        self.task = asyncio.create_task(self.watch())

    @classmethod
    async def open(cls, server, *, resuming: "ChangesWatcher | None" = None, token=None):
        """Connect a watcher, resuming from the list ``resuming`` holds if given."""
        resume = None if resuming is None else (resuming.epoch, resuming.version)
        ws = await connect_v2(server, resume, token, max_size=None)
        assert ws.subprotocol == V2_SUBPROTOCOL, ws.subprotocol
        return cls(ws, resuming)

    async def watch(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                self.frames.append(frame)
                self.take(frame)
                self.received.set()
        except websockets.ConnectionClosed as closed:
            self.closed = closed
        finally:
            self.received.set()  # waiters see the end, and what ended it

    def take(self, frame) -> None:
        assert isinstance(frame, dict), f"not a v2 frame: {frame!r}"
        kind = frame.get("type")
        if kind == "snapshot":
            assert frame.keys() == FRAME_FIELDS[kind], brief(frame)
            users = frame["users"]
            for user in users:
                check_user(user)
            assert users == by_id(users), "a snapshot not ordered by id"
            if frame["epoch"] == self.epoch:
                assert frame["version"] >= self.version, (
                    f"went back from {self.version}: {brief(frame)}"
                )
            self.epoch, self.version = frame["epoch"], frame["version"]
            self.users = {user["id"]: user for user in users}
        elif kind == "changes":
            assert frame.keys() == FRAME_FIELDS[kind], brief(frame)
            assert (frame["epoch"], frame["from"]) == (self.epoch, self.version), (
                f"holding version {self.version} of epoch {self.epoch} "
                f"(on {self.ws.request.path}), got {brief(frame)}"
            )
            assert frame["version"] >= frame["from"], brief(frame)
            for user_id in frame["deleted"]:
                assert isinstance(user_id, str), brief(frame)
                self.users.pop(user_id, None)  # a user created and deleted since: not held
            for user in frame["upserted"]:
                check_user(user)
                self.users[user["id"]] = user
            self.version = frame["version"]
        elif kind == "ack":
            assert frame.keys() in (
                {"type", "request_id", "user", "version"},
                {"type", "request_id", "deleted", "version"},
            ), brief(frame)
            assert isinstance(frame["version"], int), brief(frame)
            self.answers.setdefault(frame["request_id"], []).append(frame)
            self.replies.append(frame)
        elif kind == "error":
            assert frame.keys() >= {"type", "code", "message"}, brief(frame)
            self.errors.append(frame)
            self.replies.append(frame)
            if "request_id" in frame:
                self.answers.setdefault(frame["request_id"], []).append(frame)
        else:
            raise AssertionError(f"a frame of unknown type: {brief(frame)}")

    def held(self) -> list:
        """The list this client holds, ordered by id."""
        return by_id(self.users.values())

    async def wait_until(self, condition, timeout: float = 10, what: str = "") -> None:
        """Wait until ``condition()`` holds; fail with what this watcher last saw otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    if self.task.done():
                        self.task.result()  # raises what failed in take()
                        raise AssertionError(f"the socket closed ({self.closed})")
                    self.received.clear()
                    await self.received.wait()
        except TimeoutError:
            raise AssertionError(
                f"not {what or condition} within {timeout} s; "
                f"last frames {[brief(frame) for frame in self.frames[-3:]]}"
            ) from None
        if self.task.done() and self.task.exception() is not None:
            self.task.result()

    async def wait_for(self, expected: list, timeout: float = 10) -> None:
        """Wait until the list this client holds is ``expected``; fail with how they differ."""
        try:
            await self.wait_until(lambda: self.held() == expected, timeout, "the expected list")
        except AssertionError as failure:
            held, wanted = self.users, {user["id"]: user for user in expected}
            changed = [held[key] for key in held.keys() & wanted.keys() if held[key] != wanted[key]]
            raise AssertionError(
                f"{failure}; it lacks {[wanted[key] for key in wanted.keys() - held.keys()][:5]}, "
                f"has {[held[key] for key in held.keys() - wanted.keys()][:5]} too "
                f"and {changed[:5]} otherwise"
            ) from None

    @staticmethod
    async def all_hold(watchers: list["ChangesWatcher"], expected: list, timeout: float = 10):
        for watcher in watchers:
            await watcher.wait_for(expected, timeout)

    async def first_frame(self, timeout: float = 5) -> dict:
        await self.wait_until(lambda: self.frames, timeout, "a first frame")
        return self.frames[0]

    async def send(self, action: str, request_id: str | None = "new", **fields) -> str | None:
        """Send a command, with a new request id unless told; return the request id."""
        if request_id == "new":
            request_id = uuid.uuid4().hex
        command = {"action": action, **fields}
        if request_id is not None:
            command["request_id"] = request_id
        self.asked[request_id] = len(self.answers.get(request_id, ()))
        await self.ws.send(json.dumps(command))
        return request_id

    async def answer(self, request_id: str | None, timeout: float = 10) -> dict:
        """Wait for the ack or error frame answering the last send of ``request_id``."""
        answers, index = self.answers.setdefault(request_id, []), self.asked.get(request_id, 0)
        await self.wait_until(lambda: len(answers) > index, timeout, f"an answer to {request_id}")
        return answers[index]

    async def reply_to(self, frame: str | bytes, timeout: float = 10) -> dict:
        """Send a raw frame; return the ack or error frame that comes next."""
        before = len(self.replies)
        await self.ws.send(frame)
        await self.wait_until(lambda: len(self.replies) > before, timeout, "a reply")
        return self.replies[before]

    async def command(self, action: str, **fields) -> dict:
        """Send a command with a new request id and return its ack; fail on an error frame."""
        answer = await self.answer(await self.send(action, **fields))
        assert answer["type"] == "ack", answer
        return answer

    async def close(self) -> None:
        await self.ws.close()
        await self.task


def raised_in(text: str) -> Counter:
    """The exceptions that tracebacks in a log end with, counted by type."""
    found, inside = Counter(), False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            inside = True
        elif inside and line and not line[0].isspace():
            found[line.split(":", 1)[0]] += 1
            inside = False
    return found


def log_problems(servers, marks: list[int]) -> list[str]:
    """A problem per server whose log gained a traceback or an ERROR line during the test."""
    problems = []
    for server, mark in zip(servers, marks, strict=True):
        text = server.log.read_text(errors="replace")[mark:]
        errors = [line for line in text.splitlines() if " ERROR " in line]
        tracebacks = text.count("Traceback")
        if errors or tracebacks:
            first = f"; the first: {errors[0][:300]}" if errors else ""
            problems.append(
                f"server :{server.port} logged {tracebacks} tracebacks and {len(errors)} ERROR "
                f"lines, raising {dict(raised_in(text))}{first} (log: {server.log})"
            )
    return problems
