"""
The live list's snapshot: every user as of one version of the list, encoded once.

Every change to users bumps the list's version inside the writer's transaction
(``bump_version``), so versions follow commit order across every process. A
snapshot is the version and the list read together (``current_snapshot``),
encoded once as the bare JSON array that socket clients read. users.relay
delivers it.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F

from .models import User, UserListVersion
from .serializers import UserSerializer

VERSION_ROW = 1  # UserListVersion's one row, created by migration 0003


@dataclass(frozen=True)
class Snapshot:
    """The encoded list of users as of one version of it."""

    version: int
    text: str


def encode(users) -> str:
    """Encode users (instances or rows) as the bare JSON array that socket clients read."""
    return json.dumps(
        UserSerializer(users, many=True).data, ensure_ascii=False, separators=(",", ":")
    )


def bump_version() -> None:
    """Count one change to users, in the caller's transaction: one UPDATE."""
    if not UserListVersion.objects.filter(pk=VERSION_ROW).update(number=F("number") + 1):
        raise ImproperlyConfigured("The users list has no version row: run `manage.py migrate`.")


def current_version() -> int:
    """Return the list's version as committed now: one small query."""
    return UserListVersion.objects.values_list("number", flat=True).get(pk=VERSION_ROW)


def current_snapshot() -> Snapshot:
    """Read the version and the list as one state, and encode it."""
    with transaction.atomic():
        # Writers bump the version row before they commit, so holding its lock
        # keeps every write out from between the two reads. (PostgreSQL gives
        # each statement its own snapshot; SQLite has no row locks but reads a
        # whole transaction from one snapshot.)
        version = (
            UserListVersion.objects.select_for_update()
            .values_list("number", flat=True)
            .get(pk=VERSION_ROW)
        )
        # Rows, not model instances: building instances cost more than the query.
        rows = list(
            User.objects.order_by("id").values_list(*UserSerializer.Meta.fields, named=True)
        )
    return Snapshot(version, encode(rows))


class SharedRead:
    """
    Run ``read`` on the database thread once for every caller that asks before it starts.

    A server restart brings every client back at once; their connects then
    share a few reads of the list instead of queueing one each. A read counts
    as started when it runs, not when it is queued, so no caller gets a list
    read before it asked.
    """

    def __init__(self, read: Callable):
        self.read = read
        self.waiting: asyncio.Future | None = None  # the next read, not started yet
        self.running: set[asyncio.Task] = set()  # asyncio keeps only weak references to tasks

    async def __call__(self):
        loop = asyncio.get_running_loop()
        waiting = self.waiting
        if waiting is None or waiting.get_loop() is not loop:
            waiting = self.waiting = loop.create_future()
            task = loop.create_task(self.run(waiting))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return await asyncio.shield(waiting)

    async def run(self, result: asyncio.Future) -> None:
        try:
            result.set_result(await database_sync_to_async(self.start)(result))
        except Exception as exc:
            result.set_exception(exc)
        finally:
            if self.waiting is result:  # it failed before it started
                self.waiting = None

    def start(self, result: asyncio.Future):
        # On the database thread: whoever asks from now on waits for the next read.
        if self.waiting is result:
            self.waiting = None
        return self.read()


acurrent_snapshot = SharedRead(current_snapshot)
acurrent_version = database_sync_to_async(current_version)
