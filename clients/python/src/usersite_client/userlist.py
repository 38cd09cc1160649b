"""
The list of users as protocol v2's frames describe it, with no socket.

The rules that keep a client's list right (never older than one it had, never
half a change) live here, in one class that tests drive frame by frame. With
a live query the list is the query's window, in the query's order.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import OutOfSyncError
from .query import WHOLE_LIST, Query


class Users(Mapping[str, dict[str, str]]):
    """
    Users by id, in the order of the query followed (integer id for the whole
    list), and ``total``: how many users match the query, the window's or not.

    Read-only, and the user dicts are shared with later lists, so treat them
    as read-only too.
    """

    def __init__(self, users: dict[str, dict[str, str]], total: int):
        self._users, self.total = users, total

    def __getitem__(self, user_id: str) -> dict[str, str]:
        return self._users[user_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def __repr__(self) -> str:
        return f"Users({self._users!r}, total={self.total})"


@dataclass(frozen=True)
class Update:
    """The list after one frame moved it forward, and what that frame changed."""

    epoch: str
    version: int
    users: Users
    snapshot: bool  # the whole list or window came at once (connect, new epoch, new query)
    upserted: tuple[dict[str, str], ...] = ()
    deleted: tuple[str, ...] = ()  # only ids the list held


class UserList:
    """
    The newest list a client holds of ``query``, with the epoch and version it is at.

    ``apply`` returns an Update when a frame moved the list forward, and None
    when it did not (a resume with nothing new, a snapshot no newer than the
    list). A frame it cannot apply exactly, changes from another version or
    epoch or a malformed frame, raises OutOfSyncError and changes nothing: only a
    new snapshot brings the list back.
    """

    def __init__(self, query: Query = WHOLE_LIST) -> None:
        self.query = query
        self.epoch: str | None = None
        self.version: int | None = None
        self.users = Users({}, 0)

    def apply(self, frame: Mapping[str, Any]) -> Update | None:
        """Apply a ``snapshot`` or ``changes`` frame; return what it changed, if anything."""
        kind = frame.get("type")
        if kind == "snapshot":
            return self._apply_snapshot(frame)
        if kind == "changes":
            return self._apply_changes(frame)
        raise OutOfSyncError(f"{kind!r} is not a list frame")

    def _apply_snapshot(self, frame: Mapping[str, Any]) -> Update | None:
        epoch, version = _text(frame, "epoch"), _integer(frame, "version")
        users = {user["id"]: user for user in _users(frame, "users")}
        total = self._total(frame, users)
        if epoch == self.epoch and version <= self.version:
            return None  # the list is this one or newer: never go back
        self.epoch, self.version, self.users = epoch, version, self._ordered(users, total)
        return Update(epoch, version, self.users, snapshot=True)

    def _apply_changes(self, frame: Mapping[str, Any]) -> Update | None:
        epoch, start, version = (
            _text(frame, "epoch"),
            _integer(frame, "from"),
            _integer(frame, "version"),
        )
        upserted, deleted = _users(frame, "upserted"), _ids(frame, "deleted")
        if self.epoch is None:
            raise OutOfSyncError("changes came before any snapshot")
        if epoch != self.epoch:
            raise OutOfSyncError(f"changes in epoch {epoch!r}; the list is in {self.epoch!r}")
        if start != self.version:
            raise OutOfSyncError(f"changes from version {start}; the list is at {self.version}")
        if version < start or (version == start and (upserted or deleted)):
            raise OutOfSyncError(f"changes from version {start} to {version}")
        if version == start:
            return None  # a resume that found nothing new
        users = dict(self.users)
        users.update((user["id"], user) for user in upserted)
        # An id the list does not hold was created and deleted in between.
        removed = tuple(user_id for user_id in deleted if users.pop(user_id, None) is not None)
        total = self._total(frame, users)
        self.version, self.users = version, self._ordered(users, total)
        return Update(epoch, version, self.users, False, tuple(upserted), removed)

    def _total(self, frame: Mapping[str, Any], users: dict[str, dict[str, str]]) -> int:
        """The frame's ``total``; the whole list's frames may leave it out, as every user counts."""
        if "total" not in frame and self.query == WHOLE_LIST:
            return len(users)
        return _integer(frame, "total")

    def _ordered(self, users: dict[str, dict[str, str]], total: int) -> Users:
        return Users({user["id"]: user for user in self.query.sort(users.values())}, total)


def _text(frame: Mapping[str, Any], key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise OutOfSyncError(f"{frame.get('type')} frame without a text {key!r}")
    return value


def _integer(frame: Mapping[str, Any], key: str) -> int:
    value = frame.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise OutOfSyncError(f"{frame.get('type')} frame without an integer {key!r}")
    return value


def _ids(frame: Mapping[str, Any], key: str) -> list[str]:
    values = frame.get(key)
    if not isinstance(values, list) or not all(_is_id(value) for value in values):
        raise OutOfSyncError(f"{frame.get('type')} frame without a list of ids in {key!r}")
    return values


def _users(frame: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    values = frame.get(key)
    if not isinstance(values, list) or not all(_is_user(value) for value in values):
        raise OutOfSyncError(f"{frame.get('type')} frame without a list of users in {key!r}")
    # A copy of the three fields: nothing else the frame held is kept.
    return [{field: value[field] for field in ("id", "name", "email")} for value in values]


def _is_user(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _is_id(value.get("id"))
        and isinstance(value.get("name"), str)
        and isinstance(value.get("email"), str)
    )


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()
