"""
The live list of users: building, versioning, encoding and publishing its snapshot.

Every change to users bumps the list version in the writer's transaction
(``record_change``). After the commit, the list is read and encoded once and
sent to the ``users`` group as finished text; each process's relay
(users.relay) hands it to its sockets, which forward it as it is, and only
when its version is newer than the last they took, so a client never goes
back to an older list, whichever process or path delivered which snapshot
first.
"""

import asyncio
import json
import logging
import threading
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from .models import User, UserListVersion
from .serializers import UserSerializer

GROUP = "users"
SNAPSHOT_EVENT = "users.snapshot"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The encoded list of users as of one version of it."""

    version: int
    text: str

    def as_event(self) -> dict:
        """Return the channel-layer message; msgpack carries only primitives."""
        return {"type": SNAPSHOT_EVENT, "version": self.version, "text": self.text}

    @classmethod
    def from_event(cls, event: dict) -> "Snapshot":
        return cls(version=event["version"], text=event["text"])


def encode(users) -> str:
    """Encode users (instances or rows) as the bare JSON array that socket clients read."""
    return json.dumps(
        UserSerializer(users, many=True).data, ensure_ascii=False, separators=(",", ":")
    )


def current_snapshot() -> Snapshot:
    """Read the version and the list as one state, and encode it."""
    with transaction.atomic():
        # Writers bump the version row before they commit, so holding its lock
        # keeps every write out from between the two reads. (PostgreSQL gives
        # each statement its own snapshot; SQLite has no row locks but reads a
        # whole transaction from one snapshot.)
        version = (
            UserListVersion.objects.select_for_update()
            .filter(pk=1)
            .values_list("number", flat=True)
            .first()
        )
        # Rows, not model instances: building instances cost more than the query.
        rows = list(
            User.objects.order_by("id").values_list(*UserSerializer.Meta.fields, named=True)
        )
    return Snapshot(version or 0, encode(rows))


class _SharedReads:
    """
    Share one database read among the callers that ask while none has started.

    A burst of connecting sockets then costs a few reads, not one each. A caller
    never gets a read that began before it asked, so it cannot miss a change
    committed in between.
    """

    def __init__(self):
        self.next_read: asyncio.Future | None = None
        self.running: set[asyncio.Task] = set()  # asyncio keeps only weak references to tasks

    async def __call__(self) -> Snapshot:
        loop = asyncio.get_running_loop()
        if self.next_read is None or self.next_read.get_loop() is not loop:
            self.next_read = loop.create_future()
            task = loop.create_task(self.read(self.next_read))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return await asyncio.shield(self.next_read)

    async def read(self, result: asyncio.Future) -> None:
        self.next_read = None  # whoever asks from now on waits for the read after this one
        try:
            result.set_result(await database_sync_to_async(current_snapshot)())
        except Exception as exc:
            result.set_exception(exc)


acurrent_snapshot = _SharedReads()


@database_sync_to_async
def acurrent_version() -> int:
    """Return the list's version as committed now: one small query."""
    return UserListVersion.objects.filter(pk=1).values_list("number", flat=True).first() or 0


class _Publishing:
    """
    Publish the current snapshot; while this process is publishing, fold new requests into one.

    A writer that commits while another thread of the process is publishing
    only marks the list as changed: that thread publishes once more when done,
    and its read starts after the writer's commit, so the change is in it. A
    burst of writes then costs a few snapshots, not one per write.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.running = False
        self.changed_meanwhile = False

    def run(self) -> None:
        with self.lock:
            if self.running:
                self.changed_meanwhile = True
                return
            self.running = True
        while True:
            try:
                snapshot = current_snapshot()
                async_to_sync(get_channel_layer().group_send)(GROUP, snapshot.as_event())
            except BaseException:
                with self.lock:
                    self.running = False
                raise
            logger.debug("Published users list version %s", snapshot.version)
            with self.lock:
                # Decided under the lock, so that no request falls between the
                # check and the end of the run.
                if not self.changed_meanwhile:
                    self.running = False
                    return
                self.changed_meanwhile = False


_publishing = _Publishing()


def publish() -> None:
    """Send the current snapshot to the group (concurrent calls fold, see _Publishing)."""
    _publishing.run()


def record_change(sender, **kwargs) -> None:
    """
    Bump the list version in the current transaction and publish after commit.

    Connected to the User model's post_save, post_delete and users_changed.
    """
    if not UserListVersion.objects.filter(pk=1).update(number=F("number") + 1):
        UserListVersion.objects.get_or_create(pk=1, defaults={"number": 1})
    # One publish per transaction: a bulk delete sends post_delete for each row.
    pending = transaction.get_connection().run_on_commit
    if not any(callback is publish for _, callback, _ in pending):
        # robust: a failure to publish is logged; it never fails the write.
        transaction.on_commit(publish, robust=True)
