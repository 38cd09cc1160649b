import json
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from tests.helpers import wire
from users import history, services, snapshots
from users.models import UserListVersion, UserTombstone

pytestmark = pytest.mark.django_db


def test_a_deletion_leaves_a_tombstone_with_its_version():
    ann = services.user_create(name="Ann")
    ann_id = ann.pk
    services.user_delete(ann)
    assert list(UserTombstone.objects.values_list("user_id", "version")) == [(ann_id, 2)]


def test_forgetting_keeps_what_is_younger_than_the_history(settings):
    services.user_delete(services.user_create(name="Ann"))
    settings.USERS_HISTORY_SECONDS = 3600
    history.forget_expired()
    assert UserTombstone.objects.count() == 1
    assert UserListVersion.objects.get().history_starts == 0


def test_newepoch_makes_every_held_version_take_the_snapshot():
    services.user_create(name="Ann")
    before = UserListVersion.objects.get()
    out = StringIO()
    call_command("newepoch", stdout=out)
    after = UserListVersion.objects.get()
    assert after.epoch != before.epoch
    assert after.epoch in out.getvalue()
    reading = snapshots.read(everyone=False, resumes=[(before.epoch, before.number)])
    assert json.loads(reading.frame_for(before.epoch, before.number).text)["type"] == "snapshot"


@pytest.mark.django_db(transaction=True)
async def test_sockets_of_a_running_server_take_the_whole_list_in_a_new_epoch(connect):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    socket = await connect(subprotocols=["users.v2"])
    first = json.loads(await socket.receive_from())
    await database_sync_to_async(call_command)("newepoch", stdout=StringIO())
    # The relay's once-a-second check sees the new epoch.
    snapshot = json.loads(await socket.receive_from(timeout=5))
    assert snapshot["type"] == "snapshot"
    assert snapshot["epoch"] != first["epoch"]
    assert snapshot["users"] == [wire(ann)]
