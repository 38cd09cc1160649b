"""
Live queries against real server processes: windows stay equal to REST's pages.

Two uvicorn processes on PostgreSQL with Redis (one on SQLite with the
in-memory layer). Clients follow windows of every order, with and without a
search, on both processes; two writers change the same users at once through
REST, one per process; some clients leave and resume on the other process.
When the writes end, every window must equal the REST page of its query, and
its ``total`` REST's; no 5xx, and no traceback in the logs.
"""

import asyncio
import json
import random
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from tests.e2e.clients import log_problems
from tests.helpers import HeldWindow
from users.queries import Query

pytestmark = pytest.mark.backends

NAMES = ["ann", "Bob", "bea", "Abe", "cab", "Dan", "ada", "bAb", "é", "É", "a", "B"]
QUERIES = [
    Query(search=search, order=order, limit=5)
    for order in ["id", "-id", "name", "-name"]
    for search in ["", "a"]
] + [Query(search="b", order="name")]
WRITES_PER_WRITER = 40
CONVERGE_SECONDS = 10


class WindowWatcher:
    """A v2 client following a live query, holding only what its frames say."""

    def __init__(self, ws, held: HeldWindow):
        self.ws, self.held, self.failure = ws, held, None
        self.received = asyncio.Event()
        self.task = asyncio.create_task(self.watch())

    @classmethod
    async def open(cls, server, query: Query, resuming: HeldWindow | None = None):
        parameters = query.as_parameters()
        held = resuming or HeldWindow(query)
        if resuming is not None:
            parameters |= {"epoch": held.epoch, "version": held.version}
        ws = await connect(f"{server.ws_url}?{urlencode(parameters)}", subprotocols=["users.v2"])
        return cls(ws, held)

    async def watch(self) -> None:
        try:
            async for text in self.ws:
                self.held.apply(json.loads(text))
                self.received.set()
        except Exception as exc:  # a frame that does not apply: reported by wait_for
            self.failure = exc
        finally:
            self.received.set()

    async def wait_for(self, page: list, total: int) -> str | None:
        """Wait until the window is ``page`` of ``total``; say how it differs otherwise."""
        try:
            async with asyncio.timeout(CONVERGE_SECONDS):
                while (self.held.window(), self.held.total) != (page, total):
                    if self.failure is not None or self.task.done():
                        break
                    self.received.clear()
                    await self.received.wait()
                else:
                    return None
        except TimeoutError:
            pass
        return (
            f"{self.held.query}: holds {self.held.window()} of {self.held.total}, REST "
            f"{page} of {total}; failure: {self.failure!r}"
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def rest_page(http, query: Query) -> tuple[list, int]:
    """
    REST's page of ``query`` (every page, for a query without a limit): the
    window a socket with that query must hold.
    """
    parameters = query.as_parameters() | {"limit": query.limit or 500}
    answer = await http.get("/api/v1/users", params=parameters)
    users = []
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        users += body["users"]
        if query.limit is not None or body["next"] is None:
            return users, body["total"]
        answer = await http.get(body["next"])


async def write_at_random(http, generator: random.Random, ids: list, problems: list) -> None:
    """Creates, renames and deletes of users that the other writer changes too."""
    for _ in range(WRITES_PER_WRITER):
        choice = generator.random()
        if choice < 0.35 or not ids:
            answer = await http.post("/api/v1/users", json={"name": generator.choice(NAMES)})
            if answer.status_code == 201:
                ids.append(answer.json()["id"])
        elif choice < 0.75:
            user_id = generator.choice(ids)
            answer = await http.patch(
                f"/api/v1/users/{user_id}", json={"name": generator.choice(NAMES)}
            )
        else:
            user_id = generator.choice(ids)
            answer = await http.delete(f"/api/v1/users/{user_id}")
            if user_id in ids:
                ids.remove(user_id)
        if answer.status_code >= 500 or answer.status_code not in (200, 201, 204, 404):
            problems.append(f"{answer.request.method} {answer.request.url}: {answer.status_code}")


async def test_windows_equal_rest_pages_after_concurrent_writers_and_resumes(
    servers, rest, log_marks
):
    generator = random.Random(16)
    ids = []
    for _ in range(20):
        answer = await rest[0].post("/api/v1/users", json={"name": generator.choice(NAMES)})
        ids.append(answer.json()["id"])
    watchers = [
        await WindowWatcher.open(servers[k % len(servers)], query)
        for k, query in enumerate(QUERIES)
    ]
    problems = []
    writers = [
        asyncio.create_task(write_at_random(http, random.Random(k), ids, problems))
        for k, http in enumerate(rest)
    ]
    await asyncio.sleep(0.5)  # some writes in: then three clients leave for a while
    leaving = watchers[:3]
    for watcher in leaving:
        await watcher.close()
    await asyncio.gather(*writers)
    resumed = [
        await WindowWatcher.open(servers[(k + 1) % len(servers)], w.held.query, resuming=w.held)
        for k, w in enumerate(leaving)
    ]
    for watcher in [*resumed, *watchers[3:]]:
        page, total = await rest_page(rest[0], watcher.held.query)
        problem = await watcher.wait_for(page, total)
        if problem:
            problems.append(problem)
    for watcher in [*resumed, *watchers[3:]]:
        await watcher.close()
    problems += log_problems(servers, log_marks)
    assert not problems, "\n".join(problems)
