import json

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from tests.conftest import assert_silent
from tests.helpers import wire
from users import services, snapshots
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)


async def next_event_or_none(group_listener, timeout: float = 1) -> dict | None:
    try:
        return await group_listener(timeout)
    except TimeoutError:
        return None


def listed(event) -> list:
    assert event["type"] == "users.snapshot"
    return json.loads(event["text"])


async def test_a_committed_create_publishes_the_full_list_once(group_listener):
    ann = await database_sync_to_async(services.user_create)(name="Ann", email="a@example.org")
    assert listed(await group_listener()) == [wire(ann)]
    await assert_silent(group_listener)


async def test_every_change_publishes_a_newer_version(group_listener):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    created = await group_listener()
    await database_sync_to_async(services.user_update)(ann, name="Anna")
    anna = wire(ann)
    updated = await group_listener()
    await database_sync_to_async(services.user_delete)(ann)
    deleted = await group_listener()
    assert created["version"] < updated["version"] < deleted["version"]
    assert [listed(e) for e in (updated, deleted)] == [[anna], []]


async def test_a_rolled_back_change_publishes_nothing(group_listener):
    def create_then_fail():
        with transaction.atomic():
            services.user_create(name="Ghost")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(create_then_fail)()
    await assert_silent(group_listener)
    assert not await User.objects.aexists()


async def test_many_changes_in_one_transaction_publish_once(group_listener):
    await database_sync_to_async(User.objects.bulk_create)([User(name=f"U{i}") for i in range(5)])
    assert len(listed(await group_listener())) == 5
    # QuerySet.delete() sends post_delete for each row, all in one transaction.
    await database_sync_to_async(User.objects.all().delete)()
    assert listed(await group_listener()) == []
    await assert_silent(group_listener)


async def test_orm_code_outside_the_services_is_published(group_listener):
    ann = await User.objects.acreate(name="Ann")
    assert listed(await group_listener()) == [wire(ann)]
    await database_sync_to_async(User.objects.filter(pk=ann.pk).update)(email="ann@example.org")
    assert listed(await group_listener())[0]["email"] == "ann@example.org"
    await database_sync_to_async(User.objects.bulk_update)([User(pk=ann.pk, name="Anna")], ["name"])
    assert listed(await group_listener())[0]["name"] == "Anna"


async def test_an_update_matching_nothing_publishes_nothing(group_listener):
    await database_sync_to_async(User.objects.filter(name="nobody").update)(name="x")
    await assert_silent(group_listener)


async def test_in_a_server_a_burst_of_changes_shares_the_publishes(
    connect, group_listener, settings
):
    settings.USERS_PUBLISH_INTERVAL = 0.5
    await connect()  # a socket starts this loop's relay, and with it its publisher

    def create_one_by_one():
        for i in range(10):
            services.user_create(name=f"U{i}")  # ten transactions, ten commits

    await database_sync_to_async(create_one_by_one)()
    events = [await group_listener()]
    while len(events) < 10 and (event := await next_event_or_none(group_listener)):
        events.append(event)
    # The first commit is published at once, the rest after the interval, together.
    assert len(events) <= 2
    assert len(listed(events[-1])) == 10


def test_the_snapshot_carries_the_version_of_its_list():
    assert snapshots.current_snapshot() == snapshots.Snapshot(0, "[]")
    ann = services.user_create(name="Änn")
    services.user_create(name="Bob")
    snapshot = snapshots.current_snapshot()
    assert snapshot.version == 2
    assert json.loads(snapshot.text)[0] == wire(ann)
    assert "Änn" in snapshot.text, "encoded as UTF-8 text, not \\u escapes"


def test_a_failed_publish_is_logged_and_the_write_stands(settings, caplog, unused_tcp_port):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    user = services.user_create(name="Kept")
    assert User.objects.filter(pk=user.pk).exists()
    assert any(
        record.levelname == "ERROR" and "publish" in record.getMessage()
        for record in caplog.records
    )
