"""Two server processes sharing Redis and the database."""

import asyncio
import json
import os

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from tests.e2e.clients import (
    ListWatcher,
    admin_create,
    admin_session,
    database_list,
    next_list,
    rest_create,
    unique_name,
)
from tests.e2e.conftest import needs_redis

pytestmark = [needs_redis, pytest.mark.backends]

USERS_GROUP_KEY = "asgi:group:users"  # channels-redis' key for the users group


@pytest.fixture
def two_servers(start_server):
    return start_server("uvicorn"), start_server("uvicorn")


async def socket_create(server, name):
    async with connect(server.ws_url) as ws:
        await next_list(ws)
        await ws.send(json.dumps({"action": "create", "name": name}))
        await next_list(ws)


async def admin_create_on(server, name):
    async with admin_session(server) as http:
        await admin_create(http, name)


@pytest.mark.parametrize("create", [socket_create, rest_create, admin_create_on])
async def test_a_change_made_through_one_process_reaches_clients_of_both(two_servers, create):
    a, b = two_servers
    async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
        await next_list(on_a), await next_list(on_b)
        name = unique_name(create.__name__)
        await create(b, name)
        current = await database_list(a)
        assert name in [user["name"] for user in current]
        assert await next_list(on_a) == await next_list(on_b) == current


async def test_concurrent_writers_on_both_processes_leave_every_client_on_the_database_list(
    two_servers,
):
    a, b = two_servers
    sockets = [await connect(server.ws_url) for server in (a, b, a, b)]
    watchers = [ListWatcher(ws) for ws in sockets]

    async def rest_writer(server, count):
        async with httpx.AsyncClient() as http:
            for _ in range(count):
                await rest_create(server, unique_name("rest"), http)

    async def socket_writer(server, count):
        async with connect(server.ws_url) as ws:
            for _ in range(count):
                await ws.send(json.dumps({"action": "create", "name": unique_name("socket")}))

    before = len(await database_list(a))
    await asyncio.gather(
        *(rest_writer(server, 25) for server in (a, b, a, b)),
        *(socket_writer(server, 50) for server in (a, b)),
    )
    expected_count = before + 200
    async with asyncio.timeout(20):
        while len(current := await database_list(b)) < expected_count:
            await asyncio.sleep(0.1)
    assert len(current) == expected_count
    await ListWatcher.all_end_on(watchers, current)
    for ws in sockets:
        await ws.close()


async def test_a_server_that_stops_leaves_the_group_for_the_others(start_server):
    """A member left behind would be sent every change until the group expiry."""
    group = redis.Redis.from_url(os.environ["REDIS_URL"])
    members_before = group.zcard(USERS_GROUP_KEY)
    server = start_server("uvicorn")
    async with connect(server.ws_url) as ws:  # its first socket starts its relay
        await next_list(ws)
        assert group.zcard(USERS_GROUP_KEY) == members_before + 1
    server.stop()
    assert group.zcard(USERS_GROUP_KEY) == members_before
