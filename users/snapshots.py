"""
The live list of users: building, versioning, encoding and publishing its snapshot.

Every change to users bumps the list version in the writer's transaction
(``record_change``). After the commit, the list is read and encoded once (in
a server, once per USERS_PUBLISH_INTERVAL for a whole burst) and sent to the
``users`` group as finished text; each process's relay
(users.relay) hands it to its sockets, which forward it as it is, and only
when its version is newer than the last they took, so a client never goes
back to an older list, whichever process or path delivered which snapshot
first.
"""

import asyncio
import contextvars
import json
import logging
import weakref
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
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


async def apublish() -> None:
    """Read the current snapshot and send it to the group."""
    snapshot = await acurrent_snapshot()
    await get_channel_layer().group_send(GROUP, snapshot.as_event())
    logger.debug("Published users list version %s", snapshot.version)


class BackgroundPublisher:
    """
    Publish for a server's event loop, off the writers' threads, at most once per interval.

    Writers only ask; one task of the loop publishes, and its read starts after
    the request, so every change committed before is in it. The first change
    after a quiet spell goes out at once; the changes of a burst share one
    snapshot and one fan-out per USERS_PUBLISH_INTERVAL, instead of costing one
    each, and no writer waits for either.
    """

    def __init__(self):
        self.requested = False
        self.task: asyncio.Task | None = None

    def request(self) -> None:
        self.requested = True
        if self.task is None:
            # A context of its own: the requesting writer's holds its request's
            # executor, which Django shuts when the response is sent.
            self.task = asyncio.create_task(self.run(), context=contextvars.Context())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.requested:
                self.requested = False
                started = loop.time()
                try:
                    await apublish()
                except Exception:
                    # The relays' catch-up resends the list once the cause is gone.
                    logger.exception("Could not publish the users list")
                await asyncio.sleep(started + settings.USERS_PUBLISH_INTERVAL - loop.time())
        finally:
            self.task = None


_background_publishers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def publish_from_this_loop() -> None:
    """
    From now on, publish the changes committed on this event loop's threads from the loop.

    Called by the relay, which only a server's loop has: a loop that lives on.
    (A server process with no socket yet publishes from the writer's thread.)
    """
    _background_publishers.setdefault(asyncio.get_running_loop(), BackgroundPublisher())


async def _publish_or_hand_over() -> None:
    publisher = _background_publishers.get(asyncio.get_running_loop())
    if publisher is None:
        await apublish()
    else:
        publisher.request()


def publish() -> None:
    """
    Publish the current snapshot, after a commit.

    In a server whose loop publishes (``publish_from_this_loop``), only ask it
    to; elsewhere (a management command, a shell) publish now.
    """
    async_to_sync(_publish_or_hand_over)()


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
