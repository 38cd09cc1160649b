"""A burst of creates while many clients listen."""

import asyncio

import httpx
from websockets.asyncio.client import connect

from tests.e2e.clients import ListWatcher, database_list, rest_create, unique_name

CLIENTS = 500
CREATES = 200
WRITERS = 10


async def test_200_creates_with_500_clients_leave_each_on_the_final_list_never_going_back(
    start_server,
):
    server = start_server("uvicorn")
    sockets = []
    for _ in range(CLIENTS // 50):
        sockets += await asyncio.gather(*(connect(server.ws_url) for _ in range(50)))
    watchers = [ListWatcher(ws) for ws in sockets]
    initial = await database_list(server)
    for watcher in watchers:
        await watcher.wait_for(initial)

    async def writer():
        async with httpx.AsyncClient(timeout=60) as http:
            for _ in range(CREATES // WRITERS):
                await rest_create(server, unique_name("burst"), http)

    clock = asyncio.get_running_loop().time
    started = clock()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    print(f"{CREATES} creates took {clock() - started:.2f} s")
    final = await database_list(server)
    assert len(final) == len(initial) + CREATES
    await ListWatcher.all_end_on(watchers, final, timeout=60)
    print(f"every client held the final list after {clock() - started:.2f} s")
    await asyncio.gather(*(ws.close() for ws in sockets))
