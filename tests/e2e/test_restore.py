"""
The database restored from a backup, without ``manage.py newepoch``: every
client ends on the restored list (docs/operations.md, "Backup and restore").

The servers run on a database of their own, a copy of the session's, since a
restore puts back everything the backup holds.
"""

import os
import sqlite3
import subprocess
import uuid
from contextlib import closing
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from tests.e2e.clients import ChangesWatcher, ListWatcher, database_list, unique_name
from tests.e2e.conftest import needs_redis

pytestmark = pytest.mark.backends


def dump(database_url: str, file) -> None:
    """Back the database up, as an operator would: pg_dump, or SQLite's online backup."""
    if database_url.startswith("sqlite"):
        with (
            closing(sqlite3.connect(file)) as copy,
            closing(sqlite3.connect(path(database_url))) as live,
        ):
            live.backup(copy)
    else:
        subprocess.run(["pg_dump", "--format=custom", f"--file={file}", database_url], check=True)


def restore(file, database_url: str) -> None:
    """Restore a backup into the database, while servers use it."""
    if database_url.startswith("sqlite"):
        # sqlite3's .restore: through SQLite's locks, so running servers see
        # the old database or the restored one, never a half-copied file.
        with (
            closing(sqlite3.connect(file)) as copy,
            closing(sqlite3.connect(path(database_url))) as live,
        ):
            copy.backup(live)
    else:
        subprocess.run(
            ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner",
             f"--dbname={database_url}", str(file)],
            check=True,
        )  # fmt: skip


def path(sqlite_url: str) -> str:
    return urlsplit(sqlite_url).path


@pytest.fixture
def restorable_env(server_env, tmp_path):
    """
    The servers' environment on a copy of the session's database, in an epoch
    of its own: a copy that the session's epoch named would be a restore to
    the relays that heard of that epoch's versions.
    """
    session_url = server_env["DATABASE_URL"]
    if session_url.startswith("sqlite"):
        copy = f"sqlite:///{tmp_path / 'restorable.sqlite3'}"
        dump(session_url, path(copy))
        with closing(sqlite3.connect(path(copy))) as database, database:
            database.execute(NEW_EPOCH, [uuid.uuid4().hex[:16]])
        yield {"DATABASE_URL": copy}
        return
    name = f"usersite_restore_{uuid.uuid4().hex[:10]}"
    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    copy = urlunsplit(urlsplit(session_url)._replace(path=f"/{name}"))
    try:
        dump(session_url, tmp_path / "session")
        restore(tmp_path / "session", copy)
        with psycopg.connect(copy, autocommit=True) as database:
            database.execute(NEW_EPOCH.replace("?", "%s"), [uuid.uuid4().hex[:16]])
        yield {"DATABASE_URL": copy}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


NEW_EPOCH = "UPDATE users_userlistversion SET epoch = ?, history_starts = number"


async def rest(server, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.request(method, path, **kwargs)
    assert response.is_success, response.text
    return response


async def create(server, prefix: str) -> dict:
    return (await rest(server, "POST", "/api/v1/users", json={"name": unique_name(prefix)})).json()


async def all_hold(v1: list[ListWatcher], v2: list[ChangesWatcher], expected: list) -> None:
    for watcher in v1:
        await watcher.wait_for(expected)
    await ChangesWatcher.all_hold(v2, expected)


async def test_clients_of_running_servers_end_on_the_restored_list(
    restorable_env, start_server, tmp_path
):
    count = 2 if os.environ.get("REDIS_URL") else 1  # the in-memory layer: one process
    servers = [start_server("uvicorn", **restorable_env) for _ in range(count)]
    v1 = [ListWatcher(await connect(server.ws_url)) for server in servers]
    v2 = [await ChangesWatcher.open(server) for server in servers]
    kept, dropped = await create(servers[0], "kept"), await create(servers[-1], "dropped")
    backed_up = await database_list(servers[0])
    await all_hold(v1, v2, backed_up)
    epoch = v2[0].epoch
    dump(restorable_env["DATABASE_URL"], tmp_path / "backup")

    # After the backup: a create, a rename, a deletion; the clients follow.
    await create(servers[-1], "after the backup")
    await rest(servers[0], "PATCH", f"/api/v1/users/{kept['id']}", json={"name": "renamed"})
    await rest(servers[-1], "DELETE", f"/api/v1/users/{dropped['id']}")
    await all_hold(v1, v2, await database_list(servers[0]))

    restore(tmp_path / "backup", restorable_env["DATABASE_URL"])
    assert await database_list(servers[0]) == backed_up
    await all_hold(v1, v2, backed_up)
    assert {watcher.epoch for watcher in v2} != {epoch}, "the v2 clients kept their epoch"
    # Later changes reach every client from the restored list on.
    await create(servers[-1], "after the restore")
    await all_hold(v1, v2, await database_list(servers[0]))
    for watcher in v2:
        await watcher.close()
    for watcher in v1:
        await watcher.ws.close()


@needs_redis
async def test_a_client_resuming_from_a_server_started_after_a_restore_gets_the_restored_list(
    restorable_env, start_server, tmp_path
):
    server = start_server("uvicorn", **restorable_env)
    away = await ChangesWatcher.open(server)
    await create(server, "kept")
    dump(restorable_env["DATABASE_URL"], tmp_path / "backup")
    for _ in range(3):
        await create(server, "after the backup")
    await away.wait_for(await database_list(server))
    await away.close()  # it holds the newest version

    server.stop()
    restore(tmp_path / "backup", restorable_env["DATABASE_URL"])
    server.start()
    # Writes enough for the restored database to hand out that version again.
    for _ in range(4):
        await create(server, "after the restore")
    back = await ChangesWatcher.open(server, resuming=away)
    first = await back.first_frame()
    assert (first["type"], first["epoch"] != away.epoch) == ("snapshot", True), first
    await back.wait_for(await database_list(server))
    await back.close()
