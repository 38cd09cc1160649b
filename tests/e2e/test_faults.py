"""Faults a long-running deployment meets: Redis restarts, group expiry, slow clients."""

import asyncio
import json
import time

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.protocol import State

from tests.e2e.clients import (
    ListWatcher,
    admin_create,
    admin_session,
    database_list,
    long_named_users,
    metric,
    next_list,
    open_never_reading_socket,
    read_until_closed,
    rest_create,
    scrape_metrics,
    unique_name,
)

TOKEN = "e2e-metrics-token"


def names(users: list) -> list:
    return [user["name"] for user in users]


async def test_after_a_redis_restart_sockets_get_the_current_list_without_reconnecting(
    start_server, own_redis
):
    server = start_server("uvicorn", REDIS_URL=own_redis.url)
    sockets = [await connect(server.ws_url) for _ in range(2)]
    watchers = [ListWatcher(ws) for ws in sockets]
    for watcher in watchers:
        await watcher.wait_for(await database_list(server))

    own_redis.stop()
    # Writes keep succeeding while the broadcast cannot go out.
    during_rest = unique_name("rest during outage")
    await rest_create(server, during_rest)
    during_admin = unique_name("admin during outage")
    async with admin_session(server) as http:
        await admin_create(http, during_admin)
    assert "Could not publish the users list" in server.log.read_text(), "not logged"
    await asyncio.sleep(1)
    own_redis.start()  # empty: the group memberships are gone

    restarted = time.monotonic()
    current = await database_list(server)
    assert {during_rest, during_admin} <= set(names(current))
    for watcher in watchers:
        await watcher.wait_for(current, timeout=15)
    print(f"every socket held the current list {time.monotonic() - restarted:.2f} s after restart")
    assert all(ws.state is State.OPEN for ws in sockets), "a socket was closed"

    after = unique_name("after restart")
    await rest_create(server, after)
    await ListWatcher.all_end_on(watchers, await database_list(server))
    for ws in sockets:
        await ws.close()


@pytest.mark.backends
async def test_a_socket_open_longer_than_the_group_expiry_keeps_getting_changes(start_server):
    server = start_server("uvicorn", CHANNEL_GROUP_EXPIRY="2")
    async with connect(server.ws_url) as ws:
        await next_list(ws)
        await asyncio.sleep(5)
        name = unique_name("after expiry")
        await rest_create(server, name)
        assert name in names(await next_list(ws))


async def test_a_client_that_never_reads_is_closed_and_never_delays_the_others(
    start_server, server_env
):
    with long_named_users(server_env, count=1000, name_length=150):  # lists of about 190 kB
        server = start_server("uvicorn", USERS_SLOW_CLIENT_TIMEOUT="2", METRICS_TOKEN=TOKEN)
        memory = psutil.Process(server.process.pid)
        never_reads = open_never_reading_socket(server)
        async with connect(server.ws_url, max_size=None) as reader:
            watcher = ListWatcher(reader)
            await watcher.wait_for(await database_list(server))
            rss_before = memory.memory_info().rss
            # However much the kernel buffers for the slow client (megabytes on
            # loopback), its sends back up at some point, and it is dropped
            # USERS_SLOW_CLIENT_TIMEOUT later.
            creates = 0
            async with httpx.AsyncClient() as http:
                while "Dropping a socket that took no list" not in server.log.read_text():
                    assert creates < 1000, "the slow client was never dropped"
                    await rest_create(server, unique_name("burst"), http)
                    creates += 1
            current = await database_list(server)
            await watcher.wait_for(current)
            rss_after = memory.memory_info().rss
        unread = creates * len(json.dumps(current))
        sent_to_slow_client = await asyncio.to_thread(read_until_closed, never_reads)
    print(f"{creates} creates; RSS grew {(rss_after - rss_before) / 1e6:.1f} MB")
    print(f"the slow client was sent {sent_to_slow_client / 1e6:.1f} of {unread / 1e6:.1f} MB")
    assert sent_to_slow_client < unread / 2, "stale lists were not dropped"
    samples = await scrape_metrics(server, TOKEN)
    assert metric(samples, "usersite_slow_clients_dropped_total") == 1


async def test_the_first_change_after_a_redis_restart_reaches_every_client_at_once(
    start_server, own_redis
):
    server = start_server("uvicorn", REDIS_URL=own_redis.url)
    sockets = [await connect(server.ws_url) for _ in range(3)]
    watchers = [ListWatcher(ws) for ws in sockets]
    await ListWatcher.all_end_on(watchers, await database_list(server))
    await rest_create(server, unique_name("before restart"))  # the pool holds connections
    await ListWatcher.all_end_on(watchers, await database_list(server))

    own_redis.stop()
    own_redis.start()
    log_before_change = len(server.log.read_text())
    await rest_create(server, unique_name("right after restart"))
    await ListWatcher.all_end_on(watchers, await database_list(server), timeout=0.5)
    assert " ERROR " not in server.log.read_text()[log_before_change:]
    for ws in sockets:
        await ws.close()
