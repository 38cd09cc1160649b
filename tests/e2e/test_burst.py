"""A burst of creates, sent within a second, while many clients listen."""

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.clients import ListWatcher, database_list, rest_create, unique_name

CLIENTS = 500
CREATES = 200
WRITERS = 10  # of the clients, for creates over the socket
BURST_SECONDS = 1.0


async def wait_for_users(server, count: int, timeout: float = 60) -> list:
    """Return the database's list once it holds ``count`` users."""
    async with asyncio.timeout(timeout):
        while len(users := await database_list(server)) < count:
            await asyncio.sleep(0.1)
    return users


@pytest.mark.backends
@pytest.mark.parametrize("via", ["socket", "rest"])
async def test_200_creates_within_a_second_leave_500_clients_on_the_final_list(start_server, via):
    server = start_server("uvicorn")
    sockets = []
    for _ in range(CLIENTS // 50):
        sockets += await asyncio.gather(*(connect(server.ws_url) for _ in range(50)))
    watchers = [ListWatcher(ws) for ws in sockets]
    initial = await database_list(server)
    for watcher in watchers:
        await watcher.wait_for(initial)
    names = [unique_name(f"burst {k}") for k in range(CREATES)]

    loop = asyncio.get_running_loop()
    started = loop.time()

    async def create(k: int, http: httpx.AsyncClient) -> None:
        # Sent at its time in the second, whether or not earlier creates are done.
        await asyncio.sleep(started + k * BURST_SECONDS / CREATES - loop.time())
        if via == "socket":
            await sockets[k % WRITERS].send(json.dumps({"action": "create", "name": names[k]}))
        else:
            await rest_create(server, names[k], http)

    # A new connection per create, as from 200 clients. A pooled one could be
    # reused just as uvicorn closes it for 5 s of idleness (its keep-alive
    # timeout), which this process, busy decoding 500 sockets' frames, can reach
    # before its last create: httpx.ReadError, seen once in CI.
    fresh_connections = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=fresh_connections) as http:
        await asyncio.gather(*(create(k, http) for k in range(CREATES)))
    print(f"{CREATES} creates via {via} sent within {loop.time() - started:.2f} s")
    final = await wait_for_users(server, len(initial) + CREATES)
    assert {user["name"] for user in final} - {user["name"] for user in initial} == set(names)
    await ListWatcher.all_end_on(watchers, final, timeout=60)
    print(f"every client held the final list {loop.time() - started:.2f} s after the first create")
    await asyncio.gather(*(ws.close() for ws in sockets))
