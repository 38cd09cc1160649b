"""The live list over real sockets and HTTP against a real server process."""

import asyncio
import json

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.e2e.clients import (
    admin_create,
    admin_session,
    database_list,
    long_named_users,
    next_list,
    rest_create,
    unique_name,
)


async def two_clients_see(server, make_change) -> None:
    """Connect two clients, make a change, and check both end on the database's list."""
    async with connect(server.ws_url) as first, connect(server.ws_url) as second:
        assert await next_list(first) == await next_list(second) == await database_list(server)
        name = await make_change(first)
        received = [await next_list(first), await next_list(second)]
        current = await database_list(server)
        assert name in [user["name"] for user in current]
        assert received == [current, current]


async def test_a_create_over_the_socket_reaches_both_clients(server):
    name = unique_name("Socket")

    async def create(ws):
        await ws.send(json.dumps({"action": "create", "name": name, "email": ""}))
        return name

    await two_clients_see(server, create)


async def test_the_dart_add_user_command_reaches_both_clients(server):
    async with connect(server.ws_url) as first, connect(server.ws_url) as second:
        before = await next_list(first)
        await next_list(second)
        await first.send("__addUser__")
        received = [await next_list(first), await next_list(second)]
        assert received[0] == received[1] == await database_list(server)
        assert len(received[0]) == len(before) + 1
        assert all(isinstance(user["id"], str) for user in received[0])


async def test_a_create_over_rest_reaches_both_clients(server):
    name = unique_name("Rest")

    async def create(ws):
        await rest_create(server, name)
        return name

    await two_clients_see(server, create)


async def test_a_create_in_the_admin_reaches_both_clients(server):
    name = unique_name("Admin")

    async def create(ws):
        await admin_create(http, name)
        return name

    async with admin_session(server) as http:
        await two_clients_see(server, create)


async def test_an_invalid_frame_gets_an_error_and_the_socket_keeps_working(server):
    async with connect(server.ws_url) as ws:
        await next_list(ws)
        await ws.send("{not json")
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (error["type"], error["code"]) == ("error", "invalid_json")
        await ws.send(b"\x00binary")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "unsupported_frame"
        name = unique_name("After error")
        await ws.send(json.dumps({"action": "create", "name": name}))
        assert name in [user["name"] for user in await next_list(ws)]


async def test_a_foreign_origin_is_refused_and_a_missing_one_accepted(server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(server.ws_url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with connect(server.ws_url, origin=f"http://localhost:{server.port}") as browser_like:
        await next_list(browser_like)
    async with connect(server.ws_url) as native_client:  # sends no Origin header
        await next_list(native_client)


async def test_runserver_serves_the_api_and_the_socket(start_server):
    development = start_server("runserver")
    name = unique_name("Runserver")
    async with connect(development.ws_url) as ws:
        await next_list(ws)
        await ws.send(json.dumps({"action": "create", "name": name}))
        assert name in [user["name"] for user in await next_list(ws)]


async def test_runserver_sends_lists_over_a_mebibyte(start_server, server_env):
    with long_named_users(server_env, count=8000, name_length=150):  # a list of about 1.5 MB
        development = start_server("runserver")
        async with connect(development.ws_url, max_size=None) as ws:
            first = await next_list(ws, timeout=10)
            assert len(json.dumps(first)) > 1024 * 1024
            name = unique_name("Runserver large")
            await rest_create(development, name)
            assert name in [user["name"] for user in await next_list(ws, timeout=10)]
        development.stop()
    log = development.log.read_text()
    assert "ERROR" not in log, log[-2000:]
    assert "Task exception was never retrieved" not in log
