"""Small helpers shared by test modules."""

import json

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, transaction

from users import services
from users.models import User, next_version
from users.queries import Query


def list_frame(text: str) -> list:
    """Decode a frame and check that it is a list frame (a bare JSON array)."""
    frame = json.loads(text)
    assert isinstance(frame, list), frame
    return frame


async def receive_list(communicator, timeout: float = 3) -> list:
    """Receive one frame on an in-process socket (channels' WebsocketCommunicator): a list."""
    return list_frame(await communicator.receive_from(timeout=timeout))


def wire(user) -> dict:
    """The wire shape a client must see for ``user``."""
    return {"id": str(user.pk), "name": user.name, "email": user.email}


async def next_frame_brings_a_new_user(*communicators) -> None:
    """
    Create a user and assert that each socket's next frame is the one that brings it.

    So nothing was sent before it: what waiting a while for no frame would
    check, without the wait.
    """
    marker = wire(await sync_to_async(services.user_create)(name="Marker"))
    for communicator in communicators:
        frame = json.loads(await communicator.receive_from(timeout=3))
        if isinstance(frame, list):  # protocol v1: the whole list
            assert frame[-1] == marker, frame
        else:
            assert (frame["type"], frame["upserted"]) == ("changes", [marker]), frame


def make_account(username: str = "editor", *, perms=()):
    """Create a login account holding the given users.* permission codenames."""
    account = get_user_model().objects.create_user(username, password="pw-for-tests-only")
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="users", codename__in=perms)
    )
    return account


amake_account = sync_to_async(make_account)


def change_without_broadcast(name: str) -> User:
    """Commit a new user and its version, as a writer whose publish then failed."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users_user (name, email, created_at, updated_at, version) "
            "VALUES (%s, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, %s)",
            [name, next_version()[1]],
        )
    user = User.objects.get(name=name)
    connection.close()  # the caller's thread may be a throwaway one
    return user


class HeldWindow:
    """A client's window, kept by the protocol's rules (docs/protocol.md, "Live queries")."""

    def __init__(self, query: Query):
        self.query = query
        self.users: dict[str, dict] = {}
        self.epoch = self.version = self.total = None

    def apply(self, frame: dict) -> None:
        if frame["type"] == "snapshot":
            self.users = {user["id"]: user for user in frame["users"]}
        else:
            assert frame["type"] == "changes", frame
            assert (frame["epoch"], frame["from"]) == (self.epoch, self.version), frame
            for user in frame["upserted"]:
                self.users[user["id"]] = user
            for user_id in frame["deleted"]:
                self.users.pop(user_id, None)
        self.epoch, self.version, self.total = frame["epoch"], frame["version"], frame["total"]

    def window(self) -> list:
        users = [_Wire(user) for user in self.users.values()]
        self.query.sort(users)
        return [user.wire for user in users]


class _Wire:
    def __init__(self, wire: dict):
        self.wire, self.id, self.name = wire, int(wire["id"]), wire["name"]
