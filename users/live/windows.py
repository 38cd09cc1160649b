"""
Live queries' windows: what each query's sockets see, kept exact after every change.

A process keeps, for each query its sockets follow (users.queries), the window
as of the newest version it read and the search's matching ids (for ``total``,
and to know whether a changed user matched before). At each refresh
(users.live.fanout) ``LiveQueries.advance`` reads, in the refresh's transaction, the
users changed since with whether each matches each search (the database
decides, so the search means what REST's means), and moves every window on:
without a query when users only enter it, with one indexed query when a user
leaves it or a window starting at an offset may have shifted. Sockets of a
query then share one frame per version they hold; a change that moves no
window of a query and leaves its total as it was sends them nothing.
"""

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from django.db.models import BooleanField, ExpressionWrapper

from ..models import User, UserTombstone
from ..queries import Query
from ..serializers import UserSerializer
from .snapshots import ROW_FIELDS, Frame, Head, changes_frame, dump, snapshot_frame


@dataclass(frozen=True)
class Window:
    """A query's users at one version (rows of ROW_FIELDS in the query's order), and its total."""

    query: Query
    epoch: str
    version: int
    users: tuple
    total: int

    @cached_property
    def versions(self) -> dict[int, int]:
        """Each user's version, by id."""
        return {user.id: user.version for user in self.users}

    @cached_property
    def snapshot(self) -> Frame:
        users = dump(UserSerializer(self.users, many=True).data)
        return snapshot_frame(self.epoch, self.version, users, total=self.total)

    def changes_since(self, held: "Window") -> Frame | None:
        """
        The frame that brings a client holding ``held`` (this query's window at
        an older version) to this one; None when nothing it shows changed.
        """
        upserted = [user for user in self.users if held.versions.get(user.id) != user.version]
        deleted = [str(user_id) for user_id in held.versions if user_id not in self.versions]
        if not upserted and not deleted and held.total == self.total:
            return None
        return self.changes(held.version, upserted, deleted)

    def changes(self, since: int, upserted: list, deleted: list[str]) -> Frame:
        """A change set from ``since``, or the snapshot where it would be larger."""
        if len(upserted) + len(deleted) > max(len(self.users), 1):
            return self.snapshot
        return changes_frame(self.epoch, since, self.version, upserted, deleted, total=self.total)


class IdSet:
    """
    A set of user ids as a sorted array: 8 bytes an id, where a Python set
    takes about 70, for searches that match most of a large list.
    """

    def __init__(self, ids: Iterable[int]):
        self.ids = array("q", ids)  # sorted: read in id order

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, user_id: int) -> bool:
        place = bisect_left(self.ids, user_id)
        return place < len(self.ids) and self.ids[place] == user_id

    def add(self, user_id: int) -> None:
        place = bisect_left(self.ids, user_id)
        if place == len(self.ids) or self.ids[place] != user_id:
            self.ids.insert(place, user_id)

    def discard(self, user_id: int) -> None:
        place = bisect_left(self.ids, user_id)
        if place < len(self.ids) and self.ids[place] == user_id:
            del self.ids[place]


@dataclass
class Matches:
    """The ids of the users that match a search, as of ``version`` of ``epoch``."""

    epoch: str
    version: int
    ids: IdSet


@dataclass
class Changes:
    """What changed since ``since``: rows (current state) and deletions, newest state only."""

    since: int
    rows: list  # named rows of ROW_FIELDS and one match flag per search
    deleted: list  # (user id, version)
    searches: dict  # search -> the name of its flag in a row

    def rows_after(self, version: int) -> list:
        return [row for row in self.rows if row.version > version]

    def ids_after(self, version: int) -> set:
        rows = {row.id for row in self.rows_after(version)}
        return rows | {user_id for user_id, deleted in self.deleted if deleted > version}

    def matches(self, row, search: str) -> bool:
        return not search or getattr(row, self.searches[search])


NO_CHANGES = Changes(0, [], [], {})


def read_window(query: Query, *, unchanged_since: int | None = None) -> tuple:
    """The query's window from the database, in order; or of the users unchanged since a version."""
    users = User.objects.all()
    if unchanged_since is not None:
        users = users.filter(version__lte=unchanged_since)
    users = query.apply(users).values_list(*ROW_FIELDS, named=True)
    if query.limit is not None:
        users = users[query.offset : query.offset + query.limit]
    return tuple(users)


def read_changes(since: int, searches: Iterable[str]) -> Changes:
    """The users changed since ``since``, with whether each matches each search, and deletions."""
    flags = {}
    for search in searches:
        if search:
            flags[f"match_{len(flags)}"] = search
    users = User.objects.filter(version__gt=since).order_by()
    annotations = {
        name: ExpressionWrapper(Query(search).matching(), output_field=BooleanField())
        for name, search in flags.items()
    }
    rows = list(users.annotate(**annotations).values_list(*ROW_FIELDS, *annotations, named=True))
    deleted = list(
        UserTombstone.objects.filter(version__gt=since).values_list("user_id", "version")
    )
    return Changes(since, rows, deleted, {search: name for name, search in flags.items()})


class LiveQueries:
    """
    A process's windows, by query, and the windows its sockets hold.

    ``advance`` runs in the refresh's thread (one refresh at a time,
    users.live.fanout), the rest on the event loop; the matching ids are touched by
    ``advance`` alone.
    """

    def __init__(self):
        self.current: dict[Query, Window] = {}
        self.held: dict[Query, dict[int, Window]] = {}  # by version, what sockets hold
        self.matches: dict[str, Matches] = {}

    def frame_for(self, query: Query, list_at: tuple) -> Frame | None:
        """
        The frame that brings a socket of ``query`` holding ``list_at`` to the
        current window, if it is known here: None if nothing changed, False if
        this process cannot tell (the socket resumes from another's version).
        """
        window = self.current[query]
        epoch, version = list_at
        if epoch != window.epoch or version is None:
            return window.snapshot
        if version == window.version:
            return None
        held = self.held.get(query, {}).get(version)
        if held is None:
            return False
        return window.changes_since(held)

    def keep(self, sockets: Iterable) -> None:
        """Forget the windows no socket holds or follows, and the searches of none."""
        held = {}
        for socket in sockets:
            query = socket.query
            if query is None or query not in self.current:
                continue
            epoch, version = socket.list_at
            versions = held.setdefault(query, {})
            window = self.current[query]
            versions[window.version] = window
            if epoch == window.epoch and version in self.held.get(query, {}):
                versions[version] = self.held[query][version]
        self.held = held
        self.current = {query: self.current[query] for query in held}
        searches = {query.search for query in held}
        self.matches = {search: self.matches[search] for search in searches & self.matches.keys()}

    def advance(self, head: Head, queries: set, resumes: set) -> dict:
        """
        Bring the windows of ``queries`` to ``head``, inside the refresh's
        transaction; return the frames for ``resumes`` ((query, (epoch,
        version)) that no window held here answers), by pair.
        """
        windows = {query: self.current.get(query) for query in queries}
        searches = {query.search for query in queries}
        # Everything read from one version on, for windows, matches and resumes alike.
        moving = [
            item.version
            for item in [*windows.values(), *(self.matches.get(search) for search in searches)]
            if _can_move(item, head)
        ]
        moving += [version for _, (_, version) in resumes if _resumable(version, head)]
        since = min(moving, default=head.version)
        changes = read_changes(since, searches) if since < head.version else NO_CHANGES
        before = {search: self._match(search, head, changes) for search in searches}
        for query, window in windows.items():
            self.current[query] = self._move(query, window, head, changes, before[query.search])
        return {
            (query, list_at): self._resume(self.current[query], list_at, head, changes)
            for query, list_at in resumes
        }

    def _match(self, search: str, head: Head, changes: Changes | None) -> dict | None:
        """
        Bring the search's matching ids to ``head``; return whether each
        changed id matched before (None: read anew, not known).
        """
        matches = self.matches.get(search)
        if not _can_move(matches, head):
            # Unordered, without a cursor: PostgreSQL then uses the trigram
            # indexes (a cursor or ORDER BY id walked the primary key, 4x slower).
            matching = User.objects.filter(Query(search).matching()).order_by()
            ids = IdSet(sorted(matching.values_list("id", flat=True)))
            self.matches[search] = Matches(head.epoch, head.version, ids)
            return None
        before = {}
        for user_id, version in changes.deleted:
            if version > matches.version:
                before.setdefault(user_id, user_id in matches.ids)
                matches.ids.discard(user_id)
        for row in changes.rows_after(matches.version):
            before.setdefault(row.id, row.id in matches.ids)
            if changes.matches(row, search):
                matches.ids.add(row.id)
            else:
                matches.ids.discard(row.id)
        matches.version = head.version
        return before

    def _move(
        self, query: Query, window: Window | None, head: Head, changes, before: dict | None
    ) -> Window:
        total = len(self.matches[query.search].ids)
        if not _can_move(window, head) or before is None:
            return Window(query, head.epoch, head.version, read_window(query), total)
        changed = changes.rows_after(window.version)
        changed_ids = changes.ids_after(window.version)
        users = window.users
        if changed_ids and _touches(window, changes, changed, changed_ids, before):
            users = _place(window, changes, changed, changed_ids)
        return Window(query, head.epoch, head.version, users, total)

    def _resume(self, window: Window, list_at: tuple, head: Head, changes) -> Frame:
        """
        The frame for a client that holds ``window.query``'s window at ``list_at``
        (held in another process, or before a restart).

        Its old window is not known here: users of the new window are sent
        unless they provably were in it (unchanged since, with fewer changes
        than places before them), and every id it may have held is deleted.
        """
        epoch, since = list_at
        if epoch != head.epoch or not _resumable(since, head):
            return window.snapshot
        query = window.query
        changed_ids = changes.ids_after(since)
        if not changed_ids:
            return window.changes(since, [], [])
        if query.offset:
            return window.snapshot  # a change before the window may have shifted it
        upserted, unchanged = [], 0
        for user in window.users:
            if user.version > since:
                upserted.append(user)
                continue
            if query.limit is not None and unchanged + len(changed_ids) >= query.limit:
                upserted.append(user)
            unchanged += 1
        shown = window.versions
        gone = changed_ids - shown.keys()
        if query.limit is not None and len(window.users) >= query.limit:
            # Unchanged users pushed out: among the first ``limit`` that are unchanged.
            first = read_window(query, unchanged_since=since)
            gone |= {user.id for user in first} - shown.keys()
        return window.changes(since, upserted, [str(user_id) for user_id in sorted(gone)])


def _touches(window: Window, changes: Changes, changed: list, changed_ids: set, before) -> bool:
    """Whether the changes may move the window: then it is worked out again."""
    query = window.query
    if not changed_ids.isdisjoint(window.versions):
        return True
    if query.offset and any(before.get(user_id) for user_id in changed_ids):
        return True  # a match that changed may have been before the window: places moved
    full = query.limit is not None and len(window.users) >= query.limit
    return any(
        changes.matches(row, query.search) and (not full or query.precedes(row, window.users[-1]))
        for row in changed
    )


def _place(window: Window, changes: Changes, changed: list, changed_ids: set) -> tuple:
    """
    The window after the changes: the users who stayed and those who entered,
    in order, when they fill it as far as it reached; else read again.
    """
    query = window.query
    if query.offset:
        return read_window(query)
    users = [user for user in window.users if user.id not in changed_ids]
    users += [row for row in changed if changes.matches(row, query.search)]
    query.sort(users)
    limit = query.limit
    if limit is None or len(window.users) < limit:
        return tuple(users[:limit])  # the window held every match: so does this
    if len(users) >= limit and not query.precedes(window.users[-1], users[limit - 1]):
        return tuple(users[:limit])  # the users behind the window come later still
    return read_window(query)


def _can_move(item, head: Head) -> bool:
    """Whether ``item`` (a Window or Matches) can be brought to ``head`` from its changes."""
    return item is not None and item.epoch == head.epoch and _resumable(item.version, head)


def _resumable(version: int, head: Head) -> bool:
    return version is not None and head.history_starts <= version <= head.version
