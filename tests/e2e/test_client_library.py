"""The Python client library (clients/python) against real server processes."""

import asyncio
import json
import signal
import sys
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from usersite_client import CommandError, LiveUsers
from websockets.asyncio.client import connect

from tests.e2e.clients import database_list, rest_create, unique_name

WATCH = Path(sys.executable).parent / "usersite-watch"


async def next_users_where(live, condition, timeout: float = 10):
    """Return the first list the client yields for which ``condition`` holds."""
    async with asyncio.timeout(timeout):
        async for users in live:
            if condition(users):
                return users
    raise AssertionError("the client stopped")


def as_wire_list(users) -> list:
    return list(users.values())


def search_tag() -> str:
    """A text that only this test's users have in their names: its windows hold them alone."""
    return f"w{uuid.uuid4().hex[:10]}"


def window(users) -> tuple[list[str], int]:
    """A window as a test compares it: its ids in order, and how many users match."""
    return list(users), users.total


async def servers_window(server, **query) -> tuple[list[str], int]:
    """The window in the server's own order: the first frame of a socket of its own."""
    async with connect(f"{server.ws_url}?{urlencode(query)}", subprotocols=["users.v2"]) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return [user["id"] for user in snapshot["users"]], snapshot["total"]


async def rest_rename(server, user_id: str, name: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.patch(f"{server.url}/api/v1/users/{user_id}", json={"name": name})
    assert response.status_code == 200, response.text


async def next_snapshot(updates, timeout: float = 10):
    """Return the next Update that is a snapshot: after query(), the new window."""
    async with asyncio.timeout(timeout):
        while not (update := await anext(updates)).snapshot:
            pass
    return update


async def test_the_client_keeps_the_list_and_its_writes_are_acknowledged(server):
    async with LiveUsers(server.ws_url) as live:
        created = await live.create(name=unique_name("Client"), email="")
        changed = await live.update(created["id"], email=f"{created['id']}@example.org")
        assert changed == {**created, "email": f"{created['id']}@example.org"}
        with pytest.raises(CommandError) as refused:
            await live.create(name="  ")
        assert refused.value.code == "invalid"
        other = await rest_create(server, unique_name("By REST"))
        users = await next_users_where(live, lambda users: other["id"] in users)
        assert users[created["id"]] == changed
        assert await live.delete(other["id"]) == other["id"]
        expected = await database_list(server)
        assert as_wire_list(await next_users_where(live, lambda u: other["id"] not in u)) == (
            expected
        )


async def test_the_client_resumes_after_every_server_process_restarts(start_server):
    server = start_server("uvicorn")
    async with LiveUsers(server.ws_url) as live:
        updates = live.updates()
        first = await anext(updates)
        assert first.snapshot
        server.stop()
        server.start()
        missed = await rest_create(server, unique_name("While away"))
        async with asyncio.timeout(15):
            update = await anext(updates)
            while missed["id"] not in update.users:
                update = await anext(updates)
        assert not update.snapshot, "resumed with a change set, not the whole list"
        assert as_wire_list(update.users) == await database_list(server)


async def test_usersite_watch_prints_each_change_as_it_happens(server):
    watch = await asyncio.create_subprocess_exec(
        WATCH, server.ws_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(10):
            first_line = (await watch.stdout.readline()).decode()
            assert "snapshot" in first_line.lower(), first_line
            name = unique_name("Watched")
            await rest_create(server, name)
            while name not in (line := (await watch.stdout.readline()).decode()):
                assert line, "usersite-watch ended"
    finally:
        watch.send_signal(signal.SIGINT)
        _, errors = await asyncio.wait_for(watch.communicate(), 10)
    assert b"Traceback" not in errors


async def test_a_window_stays_exact_while_another_client_writes(server):
    tag = search_tag()
    cara, bea = [await rest_create(server, f"{name} {tag}") for name in ("Cara", "Bea")]
    async with LiveUsers(server.ws_url, search=tag, order="name", limit=2) as live:
        first = await next_users_where(live, lambda users: True)
        adam = await rest_create(server, f"adam {tag}")  # first by name: pushes Cara out
        second = await next_users_where(live, lambda users: adam["id"] in users)
        await rest_rename(server, adam["id"], "Adam, out of the search")  # Cara comes back in
        third = await next_users_where(live, lambda users: adam["id"] not in users)

    assert window(first) == ([bea["id"], cara["id"]], 2)
    assert window(second) == ([adam["id"], bea["id"]], 3)
    assert window(third) == ([bea["id"], cara["id"]], 2)


# The server's name order is its database's: SQLite's and PostgreSQL's must both be the client's.
@pytest.mark.backends
async def test_query_moves_the_window_which_the_client_orders_as_the_server_does(server):
    tag = search_tag()
    # ASCII letters compare lowercased ("bea" and "Bea" tie, by id), others by code point.
    for name in ("émile", "Bea", "Zed", "Émile", "bea", "zoe", "Ärger"):
        await rest_create(server, f"{name} {tag}")
    queries = [
        {"search": tag, "order": "name", "limit": 10},
        {"search": tag, "order": "-name", "limit": 10},
        {"search": tag, "order": "-id", "limit": 2, "offset": 1},
    ]
    windows, servers_windows = [], []
    async with LiveUsers(server.ws_url, search=tag, limit=1) as live:
        updates = live.updates()
        await next_snapshot(updates)
        for query in queries:
            await live.query(**query)
            windows.append(window((await next_snapshot(updates)).users))
            servers_windows.append(await servers_window(server, **query))
        newest = await rest_create(server, f"Newest {tag}")  # pushes the -id window one place
        async with asyncio.timeout(10):
            while (pushed := window((await anext(updates)).users))[1] != 8:
                pass
        servers_pushed = await servers_window(server, **queries[-1])

    assert windows == servers_windows
    assert [total for _, total in windows] == [7, 7, 7]
    assert pushed == servers_pushed
    assert pushed[0][1] == windows[-1][0][0], "the window's first moved to its second place"
    assert newest["id"] not in pushed[0]


async def test_the_window_resumes_with_its_query_after_the_server_cut_the_connection(
    start_server,
):
    server = start_server("uvicorn")
    writer = start_server("uvicorn")  # on the same database, while the other is away
    tag = search_tag()
    bea = await rest_create(server, f"Bea {tag}")
    async with LiveUsers(server.ws_url, search=tag, order="-name", limit=2) as live:
        updates = live.updates()
        first = await next_snapshot(updates)
        server.stop()
        cara = await rest_create(writer, f"Cara {tag}")
        server.start()
        async with asyncio.timeout(15):
            while cara["id"] not in (update := await anext(updates)).users:
                pass

    assert window(first.users) == ([bea["id"]], 1)
    assert not update.snapshot, "resumed with the window's changes, not a snapshot"
    assert window(update.users) == ([cara["id"], bea["id"]], 2)


async def test_usersite_watch_prints_a_window_as_it_changes(server):
    tag = search_tag()
    bea = await rest_create(server, f"Bea {tag}")
    options = ("--search", tag, "--order", "name", "--limit", "2")
    watch = await asyncio.create_subprocess_exec(
        WATCH,
        server.ws_url,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            first = [(await watch.stdout.readline()).decode() for _ in range(2)]
            adam = await rest_create(server, f"Adam {tag}")
            then = [(await watch.stdout.readline()).decode() for _ in range(3)]
    finally:
        watch.send_signal(signal.SIGINT)
        _, errors = await asyncio.wait_for(watch.communicate(), 10)

    assert first == ["1 users match, 1 shown from place 1:\n", f"  {bea['id']}: Bea {tag} <>\n"]
    assert then == [
        "2 users match, 2 shown from place 1:\n",
        f"  {adam['id']}: Adam {tag} <>\n",
        f"  {bea['id']}: Bea {tag} <>\n",
    ]
    assert b"Traceback" not in errors
