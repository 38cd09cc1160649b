import asyncio
import logging
import threading

import pytest
import redis.asyncio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.db import connection, transaction
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.helpers import (
    change_without_broadcast,
    next_frame_brings_a_new_user,
    receive_list,
    wire,
)
from users import services
from users.live import publisher, relay, snapshots, watchdog
from users.live.subscriber import Subscriber
from users.models import User
from users.redis_clients import RedisServers

pytestmark = pytest.mark.django_db(transaction=True)


async def connected_sockets(connect, count: int = 1) -> list:
    """Open sockets and take the list each gets on connect."""
    sockets = [await connect() for _ in range(count)]
    for socket in sockets:
        await receive_list(socket)
    return sockets


async def test_a_committed_create_reaches_every_socket_once(connect):
    sockets = await connected_sockets(connect, 2)
    ann = await database_sync_to_async(services.user_create)(name="Ann", email="a@example.org")
    for socket in sockets:
        assert await receive_list(socket) == [wire(ann)]
    await next_frame_brings_a_new_user(*sockets)


async def test_every_change_reaches_the_sockets(connect):
    (socket,) = await connected_sockets(connect)
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    assert await receive_list(socket) == [wire(ann)]
    await database_sync_to_async(services.user_update)(ann, name="Anna")
    assert await receive_list(socket) == [wire(ann)]
    await database_sync_to_async(services.user_delete)(ann)
    assert await receive_list(socket) == []


async def test_a_rolled_back_change_sends_nothing(connect):
    (socket,) = await connected_sockets(connect)

    def create_then_fail():
        with transaction.atomic():
            services.user_create(name="Ghost")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(create_then_fail)()
    assert not await User.objects.aexists()
    await next_frame_brings_a_new_user(socket)


async def test_a_transaction_of_many_changes_sends_one_list(connect):
    (socket,) = await connected_sockets(connect)
    await database_sync_to_async(User.objects.bulk_create)([User(name=f"U{i}") for i in range(5)])
    assert len(await receive_list(socket)) == 5
    # QuerySet.delete() sends post_delete for each row, all in one transaction.
    await database_sync_to_async(User.objects.all().delete)()
    assert await receive_list(socket) == []
    await next_frame_brings_a_new_user(socket)


async def test_orm_code_outside_the_services_reaches_the_sockets(connect):
    (socket,) = await connected_sockets(connect)
    ann = await User.objects.acreate(name="Ann")
    assert await receive_list(socket) == [wire(ann)]
    await database_sync_to_async(User.objects.filter(pk=ann.pk).update)(email="ann@example.org")
    assert (await receive_list(socket))[0]["email"] == "ann@example.org"
    await database_sync_to_async(User.objects.bulk_update)([User(pk=ann.pk, name="Anna")], ["name"])
    assert (await receive_list(socket))[0]["name"] == "Anna"


async def test_an_update_matching_nothing_sends_nothing(connect):
    (socket,) = await connected_sockets(connect)
    await database_sync_to_async(User.objects.filter(name="nobody").update)(name="x")
    await next_frame_brings_a_new_user(socket)


async def test_changes_committed_during_a_publish_share_the_next_one(connect, monkeypatch):
    (socket,) = await connected_sockets(connect)
    read = snapshots.read

    def slow_read(**kwargs):
        threading.Event().wait(0.3)  # on the database thread; the loop runs on
        return read(**kwargs)

    monkeypatch.setattr(snapshots, "read", slow_read)

    def create_one_by_one():
        for i in range(10):
            services.user_create(name=f"U{i}")  # ten transactions, ten commits

    # Another thread, so that the creates do not queue behind the slow reads.
    await asyncio.to_thread(create_one_by_one)
    lists = [await receive_list(socket)]
    while len(lists[-1]) < 10:
        lists.append(await receive_list(socket))
    # The first commit is sent at once; the nine during that read, together.
    assert len(lists) <= 2
    await next_frame_brings_a_new_user(socket)


def test_failed_publishes_are_logged_once_without_a_traceback_and_the_writes_stand(
    settings, caplog, unused_tcp_port, monkeypatch
):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    monkeypatch.setattr(publisher.PUBLISHING, "down", False)  # whatever an earlier test left
    users = [services.user_create(name=name) for name in ("Kept", "Kept too")]
    assert User.objects.filter(pk__in=[user.pk for user in users]).count() == 2
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 1
    assert logged[0].getMessage().startswith("Could not publish the users list")
    assert logged[0].exc_info is None


async def test_a_list_whose_broadcast_went_missing_still_reaches_the_sockets(connect):
    (socket,) = await connected_sockets(connect)
    lost = await database_sync_to_async(change_without_broadcast)("Lost")
    # The relay checks the version every second and resends after a whole check behind.
    assert await receive_list(socket, timeout=5) == [wire(lost)]


async def test_the_relay_reaches_each_socket_as_a_subscriber(connect):
    await connected_sockets(connect)
    v2 = await connect(subprotocols=["users.v2"])
    await v2.receive_from(timeout=3)  # its snapshot
    sockets = list(relay.relay().fanout.sockets)
    assert sorted(socket.protocol for socket in sockets) == [1, 2]
    assert all(isinstance(socket, Subscriber) for socket in sockets)


async def test_sockets_share_one_relay_and_each_gets_every_list(connect):
    sockets = await connected_sockets(connect, 3)
    assert len(relay.relay().fanout.sockets) == 3
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    for socket in sockets:
        assert await receive_list(socket) == [wire(ann)]


async def receive_until_holding(socket, names: set, timeout: float) -> None:
    """Receive lists until one holds users of all ``names``; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not names <= {user["name"] for user in await receive_list(socket)}:
            pass


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writer at a time: no such race"
)
async def test_two_first_writers_at_once_both_reach_every_socket_at_once(connect, monkeypatch):
    sockets = await connected_sockets(connect, 2)
    both_about_to_save = threading.Barrier(2, timeout=5)
    save = User.save

    def save_with_the_other(user, *args, **kwargs):
        both_about_to_save.wait()  # then both race for the list's next version
        save(user, *args, **kwargs)

    def create_on_own_connection(name: str) -> None:
        try:
            services.user_create(name=name)
        finally:
            connection.close()

    monkeypatch.setattr(User, "save", save_with_the_other)
    await asyncio.gather(
        asyncio.to_thread(create_on_own_connection, "Ann"),
        asyncio.to_thread(create_on_own_connection, "Bob"),
    )
    # Well within the relay's one-second catch-up, which would hide a lost list.
    for socket in sockets:
        await receive_until_holding(socket, {"Ann", "Bob"}, timeout=0.5)


async def test_a_relay_whose_listener_fails_restarts_it_and_the_next_change_arrives(
    connect, caplog
):
    (socket,) = await connected_sockets(connect)
    malformed = {"type": publisher.CHANGED_EVENT}  # no epoch, no version
    await get_channel_layer().group_send(publisher.GROUP, malformed)
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    assert await receive_list(socket, timeout=0.5) == [wire(ann)]
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.exc_info[0] for r in failures] == [KeyError]
    assert "restarting" in failures[0].getMessage()


def test_a_bulk_delete_outside_a_server_publishes_once(monkeypatch):
    services.user_create(name="Ann")
    User.objects.bulk_create([User(name=f"U{i}") for i in range(50)])
    publishes = []

    async def count_publish(epoch, version):
        publishes.append(version)

    monkeypatch.setattr(publisher, "publish_now", count_publish)
    User.objects.all().delete()
    assert len(publishes) == 1


async def test_a_cancelled_identity_check_that_redis_reports_as_a_failure_stays_cancelled():
    class ClientThatReportsCancellationAsFailure:
        """What redis-py can do: turn the cancellation of a command into a RedisError."""

        async def info(self, section):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RedisConnectionError("Connection closed by server.") from None

    check = asyncio.create_task(watchdog.layer_identity(ClientThatReportsCancellationAsFailure()))
    await asyncio.sleep(0)
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL: a real Redis client")
async def test_a_relay_check_cancelled_during_a_redis_command_stops():
    # redis-py swallows a cancellation that arrives at some points of a command
    # (redis-py#2028): about a third of these, at as many moments, before the fix.
    # A pool of its own each time: the moments span connecting as well.
    servers = RedisServers.from_settings(django_settings)
    for moment in range(48):
        client = redis.asyncio.Redis.from_pool(servers.connection_pool())
        check = asyncio.create_task(watchdog.layer_identity(client))
        for _ in range(moment % 8):
            await asyncio.sleep(0)
        check.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(check, 5)
        finally:
            await client.aclose()
