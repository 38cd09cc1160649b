"""The Python client library (clients/python) against real server processes."""

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from usersite_client import CommandError, LiveUsers

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
