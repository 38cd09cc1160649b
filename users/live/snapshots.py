"""
The live list as clients receive it: one consistent read, encoded once per frame.

Every change to users takes the next version of the list in the writer's
transaction (``models.next_version``); each user row carries the version of
its last change and each deletion leaves a tombstone with its version. One
read (``read``) returns the list's head (epoch, version, how far back the
history reaches) with every user, or only with those changed since the oldest
version a client holds. From it come protocol v1's bare array and v2's
snapshot and change-set frames, each encoded once however many sockets it
goes to (users.live.fanout groups them).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter

import orjson
from django.db import connection, transaction

from ..models import VERSION_ROW, User, UserListVersion, UserTombstone
from ..serializers import UserSerializer

ROW_FIELDS = [*UserSerializer.Meta.fields, "version"]


@dataclass(frozen=True)
class Head:
    """Where the list stands: its epoch, its version, the oldest version it can resume from."""

    epoch: str
    version: int
    history_starts: int

    def can_resume(self, epoch: str | None, version: int | None) -> bool:
        """Whether every change since ``version`` of ``epoch`` is still known."""
        return (
            epoch == self.epoch
            and version is not None
            and self.history_starts <= version <= self.version
        )


@dataclass(frozen=True)
class Frame:
    """An encoded frame, and the list a client holds once it has it."""

    version: int
    text: str
    epoch: str = ""  # protocol v2's frames only
    kind: str = "list"  # "list" (v1), "snapshot" or "changes" (v2): for users.metrics

    @cached_property
    def utf8(self) -> bytes:
        """The text as UTF-8, encoded once for every socket sent it (users.sockets.consumers)."""
        return self.text.encode()

    @cached_property
    def list_at(self) -> tuple[str, int]:
        """What a v2 client holds once it has this frame: one tuple for every socket sent it."""
        return (self.epoch, self.version)


def encode(users) -> str:
    """Encode users (instances or rows) as the bare JSON array of protocol v1."""
    return dump(UserSerializer(users, many=True).data)


def dump(value) -> str:
    """
    Encode ``value`` as every list frame is encoded: compact JSON, UTF-8 text unescaped.

    The same text as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``,
    which v1's clients were sent before, from orjson: several times faster, and
    this runs on the event loop (docs/performance.md, "Encoding").
    """
    return orjson.dumps(value).decode()


def snapshot_frame(epoch: str, version: int, array: str, **extra) -> Frame:
    """Protocol v2's snapshot around ``array``, users already encoded; ``extra`` after them."""
    more = "".join(f",{dump(name)}:{dump(value)}" for name, value in extra.items())
    text = f'{{"type":"snapshot","epoch":{dump(epoch)},"version":{version},"users":{array}{more}}}'
    return Frame(version, text, epoch, "snapshot")


def changes_frame(
    epoch: str, since: int, version: int, upserted: list, deleted: list[str], **extra
) -> Frame:
    """Protocol v2's change set from ``since`` to ``version``; ``extra`` after its lists."""
    frame = {
        "type": "changes",
        "epoch": epoch,
        "from": since,
        "version": version,
        "upserted": UserSerializer(upserted, many=True).data,
        "deleted": deleted,
        **extra,
    }
    return Frame(version, dump(frame), epoch, "changes")


class NewestFrames:
    """
    The whole list's frames at the newest version read, the same objects for
    every reading of it: the sockets that connect one after another while the
    list stands still are sent one encoded text, not one each, which they
    would hold each while their clients read slowly.
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.version: tuple[str, int] | None = None
        self.frames: dict[str, Frame] = {}

    def get(self, head: Head, kind, build: Callable[[], Frame | None]) -> Frame | None:
        """The frame ``kind`` at ``head``: kept, or built now and kept (unless None)."""
        version = (head.epoch, head.version)
        if version != self.version:
            self.version, self.frames = version, {}
        frame = self.frames.get(kind)
        if frame is None:
            frame = build()
            if frame is not None:
                self.frames[kind] = frame
        return frame

    def at(self, epoch: str, version: int) -> dict | None:
        """The frames kept for ``version`` of ``epoch``, by kind; None if it is not the one kept."""
        return self.frames if self.version == (epoch, version) else None


newest_frames = NewestFrames()


@dataclass
class ListRead:
    """
    The list as of ``head``: every user (``everyone``) or those changed since
    ``since``, with the deletions since ``since``.
    """

    head: Head
    users: list  # rows of ROW_FIELDS, ordered by id
    everyone: bool
    since: int | None = None
    deleted: list | None = None  # (user id, version) of the deletions since ``since``
    also: object = None  # what ``read``'s ``also`` returned

    @cached_property
    def array(self) -> str:
        return encode(self.users)

    @cached_property
    def v1(self) -> Frame:
        """Protocol v1's list: the bare array."""
        return newest_frames.get(self.head, "list", lambda: Frame(self.head.version, self.array))

    @cached_property
    def snapshot(self) -> Frame:
        """Protocol v2's whole list, around the array v1 sends (encoded once for both)."""
        head = self.head
        return newest_frames.get(
            head, "snapshot", lambda: snapshot_frame(head.epoch, head.version, self.array)
        )

    def frame_for(self, epoch: str | None, version: int | None) -> Frame | None:
        """
        The frame that brings a client holding ``version`` of ``epoch`` to the head.

        A change set where the history reaches back and it is smaller than the
        list, else the snapshot; None when this read holds neither. Kept
        with the newest version's frames (``NewestFrames``, ``("for", epoch,
        version)``), so that the relay can offer it again without a read.
        """
        return newest_frames.get(
            self.head, ("for", epoch, version), lambda: self._frame_for(epoch, version)
        )

    def _frame_for(self, epoch: str | None, version: int | None) -> Frame | None:
        resumable = self.head.can_resume(epoch, version)
        if resumable and self.since is not None and version >= self.since:
            return self.changes(version)
        return self.snapshot if self.everyone else None

    def changes(self, since: int) -> Frame:
        head = self.head
        upserted = [user for user in self.users if user.version > since]
        # A deleted id that a user holds again (one created with an explicit id)
        # is in the list: an upsert only, or the client would drop it.
        present = {user.id for user in upserted}
        deleted = [
            str(user_id)
            for user_id, version in self.deleted
            if version > since and user_id not in present
        ]
        if self.everyone and len(upserted) + len(deleted) > len(self.users):
            return self.snapshot  # as many entries as the list itself: send the list
        return changes_frame(head.epoch, since, head.version, upserted, deleted)


def read(
    *,
    everyone: bool,
    resumes: Iterable[tuple[str | None, int | None]] = (),
    also: Callable[[Head], object] | None = None,
) -> ListRead:
    """
    Read the list's head with every user (``everyone``, or a v2 client that
    needs a snapshot among ``resumes``), or with the users and deletions since
    the oldest of the (epoch, version) pairs in ``resumes``; with neither, no
    user. ``also(head)`` reads more in the same moment (live queries' windows).
    """
    resumes = set(resumes)
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        # The reads must see one moment of the list. A writer holds the version
        # row's lock until it commits and the next version waits for it, so a
        # snapshot that holds version V holds every change up to V and none
        # after: PostgreSQL gives one to a REPEATABLE READ transaction, without
        # making writers wait for the read (its default gives each statement a
        # snapshot of its own); SQLite reads a whole transaction from one. Inside
        # a caller's transaction, holding the version row's lock does instead.
        versions = UserListVersion.objects
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            versions = versions.select_for_update()
        head = Head(*versions.values_list("epoch", "number", "history_starts").get(pk=VERSION_ROW))
        resumable = [version for epoch, version in resumes if head.can_resume(epoch, version)]
        everyone = everyone or len(resumable) < len(resumes)
        since = min(resumable, default=None)
        if not everyone and since is None:
            users = User.objects.none()
        elif everyone:
            users = User.objects.order_by("id")
        else:
            # Unordered: with ORDER BY id, SQLite walks the whole table in id
            # order instead of searching the version index (8 ms against 0.08
            # at 100,000 users, docs/performance.md); the few rows sort here.
            users = User.objects.filter(version__gt=since).order_by()
        # Rows, not model instances: building instances cost more than the query.
        rows = list(users.values_list(*ROW_FIELDS, named=True))
        if not everyone:
            rows.sort(key=attrgetter("id"))
        deleted = None
        if since is not None:
            deleted = list(
                UserTombstone.objects.filter(version__gt=since).values_list("user_id", "version")
            )
        more = also(head) if also is not None else None
    return ListRead(head, rows, everyone, since, deleted, more)


def current_version() -> tuple[str, int]:
    """Return the list's epoch and version as committed now: one small query."""
    return UserListVersion.objects.values_list("epoch", "number").get(pk=VERSION_ROW)
