"""A database that goes back to an older version (a restore without newepoch) is noticed."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import models, transaction

from tests.helpers import receive_list, wire
from users import redis_clients, services
from users.live import history, relay, restores
from users.models import VERSION_ROW, User, UserListVersion, UserTombstone
from users.sockets.routing import SOCKET_PATH

pytestmark = pytest.mark.django_db(transaction=True)

needs_redis = pytest.mark.skipif(
    not django_settings.REDIS_URL, reason="needs REDIS_URL: the versions recorded in Redis"
)


def backup() -> dict:
    """What a dump of the database holds of the list."""
    return {
        "users": list(User.objects.values()),
        "tombstones": list(UserTombstone.objects.values()),
        "version": UserListVersion.objects.values().get(pk=VERSION_ROW),
    }


def restore(dump: dict) -> None:
    """Put the list back as ``dump`` has it, as pg_restore does: rows only, no signal."""
    with transaction.atomic():
        for model in (User, UserTombstone):
            models.QuerySet(model).delete()
        models.QuerySet(User).bulk_create(User(**row) for row in dump["users"])
        models.QuerySet(UserTombstone).bulk_create(
            UserTombstone(**row) for row in dump["tombstones"]
        )
        UserListVersion.objects.filter(pk=VERSION_ROW).update(**dump["version"])


abackup, arestore = database_sync_to_async(backup), database_sync_to_async(restore)
acreate = database_sync_to_async(services.user_create)
adelete = database_sync_to_async(services.user_delete)


async def v2_frame(socket, condition, timeout: float = 3) -> dict:
    """Receive v2 frames until one meets ``condition``; return it."""
    async with asyncio.timeout(timeout):
        while not condition(frame := json.loads(await socket.receive_from(timeout))):
            pass
    return frame


def is_snapshot(frame: dict) -> bool:
    return frame["type"] == "snapshot"


async def until_current(v2, v1=None) -> None:
    """Receive until the sockets hold the list as committed."""
    _, version = await restores.acurrent_version()
    await v2_frame(v2, lambda frame: frame["version"] == version)
    if v1 is not None:
        current = [wire(user) async for user in User.objects.order_by("id")]
        async with asyncio.timeout(3):
            while await receive_list(v1) != current:
                pass


async def test_sockets_end_on_a_restored_list_in_a_new_epoch(connect):
    v1, v2 = await connect(), await connect(subprotocols=["users.v2"])
    await receive_list(v1)
    epoch = json.loads(await v2.receive_from())["epoch"]
    ann, bob = await acreate(name="Ann"), await acreate(name="Bob")
    dump = await abackup()
    await adelete(bob)
    await acreate(name="Cat")
    await until_current(v2, v1)
    await arestore(dump)
    # Each relay checks the committed version once a second.
    async with asyncio.timeout(3):
        while await receive_list(v1) != [wire(ann), wire(bob)]:
            pass
    snapshot = await v2_frame(v2, is_snapshot)
    assert (snapshot["epoch"], snapshot["users"]) == (
        (await UserListVersion.objects.aget()).epoch,
        [wire(ann), wire(bob)],
    )
    assert snapshot["epoch"] != epoch


async def test_a_write_after_a_restore_reaches_the_sockets_in_a_new_epoch_not_as_changes(connect):
    v2 = await connect(subprotocols=["users.v2"])
    epoch = json.loads(await v2.receive_from())["epoch"]
    await acreate(name="Ann")
    dump = await abackup()
    for name in ("Bob", "Cat", "Dan"):
        await acreate(name=name)
    await until_current(v2)
    await arestore(dump)
    eve = await acreate(name="Eve")  # a version the socket already holds for another list
    frames = []
    await v2_frame(v2, lambda frame: frames.append(frame) or is_snapshot(frame))
    assert [frame["type"] for frame in frames] == ["snapshot"]
    assert frames[0]["epoch"] != epoch
    assert frames[0]["users"][-1] == wire(eve)
    assert [user["name"] for user in frames[0]["users"]] == ["Ann", "Eve"]


async def test_relays_that_notice_one_restore_together_start_one_epoch(monkeypatch):
    await acreate(name="Ann")
    epoch, version = await restores.acurrent_version()
    started = []
    start = history.start_new_epoch

    def counted_start(**kwargs):
        started.append(start(**kwargs))
        return started[-1]

    monkeypatch.setattr(history, "start_new_epoch", counted_start)
    loop = asyncio.get_running_loop()
    relays = [relay.Relay(loop) for _ in range(3)]
    for each in relays:
        each.fanout.known_epoch, each.fanout.known_version = epoch, version + 5  # before a restore
    committed = await asyncio.gather(*(each.watchdog.committed() for each in relays))
    new_epoch = (await UserListVersion.objects.aget()).epoch
    assert [epoch for epoch in started if epoch is not None] == [new_epoch]
    assert {epoch for epoch, _ in committed} == {new_epoch}


def test_a_new_epoch_replacing_one_already_replaced_is_not_started():
    epoch = UserListVersion.objects.get().epoch
    first = history.start_new_epoch(replacing=epoch)
    assert history.start_new_epoch(replacing=epoch) is None
    assert UserListVersion.objects.get().epoch == first


def test_versions_of_the_same_epoch_that_grow_are_no_restore():
    assert not restores.went_back(("a", 5), ("a", 5))
    assert not restores.went_back(("a", 5), ("a", 6))
    assert not restores.went_back(("a", 5), ("b", 1))
    assert restores.went_back(("a", 5), ("a", 4))


@needs_redis
async def test_a_process_started_after_a_restore_notices_it_from_redis(connect):
    await acreate(name="Ann")
    epoch, version = await restores.acurrent_version()
    client = redis_clients.client()
    try:
        # What relays heard of before the database was restored to ``version``.
        assert await restores.record(client, epoch, version + 10) == version + 10
        assert await restores.record(client, epoch, version) == version + 10
    finally:
        await client.aclose()
    # A resume from a version this database will hand out again for another list.
    await acreate(name="Bob")
    resume = f"{SOCKET_PATH}?epoch={epoch}&version={version}"
    v2 = await connect(resume, subprotocols=["users.v2"])
    snapshot = json.loads(await v2.receive_from())
    assert snapshot["type"] == "snapshot"
    assert snapshot["epoch"] == (await UserListVersion.objects.aget()).epoch != epoch
