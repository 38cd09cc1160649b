import json
import threading
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connection, transaction

from tests.helpers import wire
from users import services
from users.live import history, snapshots
from users.models import CommandReceipt, UserListVersion, UserTombstone

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


def test_forgetting_forgets_what_is_older_than_the_history_and_says_how_much(settings):
    services.user_delete(services.user_create(name="Ann"))  # version 2
    CommandReceipt.objects.create(
        requester="anonymous", request_id="r1", action="create", result={}
    )
    settings.USERS_HISTORY_SECONDS = 0
    assert history.forget_expired() == (1, 1)
    assert not UserTombstone.objects.exists()
    assert UserListVersion.objects.get().history_starts == 2


def on_own_connection(function, *args):
    """Call ``function`` as another thread does, on a connection of its own, then close it."""
    try:
        return function(*args)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_sweep_while_another_runs_in_this_process_does_nothing(settings, monkeypatch):
    services.user_delete(services.user_create(name="Ann"))
    settings.USERS_HISTORY_SECONDS = 0
    inside, go_on = threading.Event(), threading.Event()
    forget = history.forget_expired

    def slow_forget():
        inside.set()
        go_on.wait(5)
        return forget()

    monkeypatch.setattr(history, "forget_expired", slow_forget)
    with ThreadPoolExecutor(1) as other:
        first = other.submit(on_own_connection, history.try_forget_expired)
        assert inside.wait(5)
        assert history.try_forget_expired() is None
        go_on.set()
        assert first.result(5) == (1, 0)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's write lock makes other processes wait"
)
@pytest.mark.django_db(transaction=True)
def test_a_sweep_while_another_process_sweeps_does_nothing(settings):
    services.user_delete(services.user_create(name="Ann"))
    settings.USERS_HISTORY_SECONDS = 0
    locked, release = threading.Event(), threading.Event()

    def sweep_elsewhere():
        # Another process's sweep: its transaction holds the advisory lock.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [history.SWEEP_LOCK])
            locked.set()
            release.wait(5)

    with ThreadPoolExecutor(1) as other:
        elsewhere = other.submit(on_own_connection, sweep_elsewhere)
        assert locked.wait(5)
        assert history.try_forget_expired() is None
        assert UserTombstone.objects.count() == 1
        release.set()
        elsewhere.result(5)
    assert history.try_forget_expired() == (1, 0)


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
