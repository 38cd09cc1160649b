import asyncio
import json
import threading

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.helpers import change_without_broadcast, receive_list, wire
from users import services, snapshots
from users.models import User, UserListVersion

pytestmark = pytest.mark.django_db


def test_the_snapshot_carries_the_version_of_its_list():
    assert snapshots.current_snapshot() == snapshots.Snapshot(0, "[]")
    ann = services.user_create(name="Änn")
    services.user_create(name="Bob")
    snapshot = snapshots.current_snapshot()
    assert snapshot.version == 2
    assert json.loads(snapshot.text)[0] == wire(ann)
    assert "Änn" in snapshot.text, "encoded as UTF-8 text, not \\u escapes"


def test_a_change_bumps_the_version_with_one_update_and_nothing_else():
    with CaptureQueriesContext(connection) as queries:
        snapshots.bump_version()
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("UPDATE")
    assert snapshots.current_version() == 1


def test_without_the_version_row_a_write_fails_naming_the_fix_and_writes_nothing():
    UserListVersion.objects.all().delete()
    with pytest.raises(ImproperlyConfigured, match="migrate"):
        services.user_create(name="Ann")
    assert not User.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_read_that_started_before_a_caller_asked_is_not_shared_with_it(monkeypatch):
    first_read_done, change_committed = threading.Event(), threading.Event()
    read = snapshots.acurrent_snapshot.read

    def first_read_returns_after_the_change():
        snapshot = read()
        if not first_read_done.is_set():
            first_read_done.set()
            change_committed.wait(5)
        return snapshot

    monkeypatch.setattr(snapshots.acurrent_snapshot, "read", first_read_returns_after_the_change)
    before = asyncio.ensure_future(snapshots.acurrent_snapshot())
    await asyncio.to_thread(first_read_done.wait, 5)
    # From another thread, since the first read holds the database thread.
    ann = await asyncio.to_thread(change_without_broadcast, "Ann")
    change_committed.set()
    after = await snapshots.acurrent_snapshot()
    assert json.loads(after.text) == [wire(ann)]
    assert (await before).version < after.version


@pytest.mark.django_db(transaction=True)
async def test_five_hundred_sockets_connecting_at_once_share_a_few_list_reads(connect, monkeypatch):
    await database_sync_to_async(services.user_create)(name="Ann")
    reads = []
    read = snapshots.acurrent_snapshot.read

    def counted_read():
        reads.append(1)
        return read()

    monkeypatch.setattr(snapshots.acurrent_snapshot, "read", counted_read)
    sockets = await asyncio.gather(*(connect() for _ in range(500)))
    for socket in sockets:
        assert len(await receive_list(socket)) == 1
    print(f"500 connects read the list {len(reads)} times")
    assert len(reads) <= 10
