"""
Protocol v2's list as a benchmark client holds it, built from snapshot and changes frames.

Each client holds what docs/protocol.md says a client holds: the epoch, the
version and the users, and applies every frame to them. Hundreds of clients
of a 100,000-user list share one process here, so they share what is equal,
which keeps the client's CPU and memory off the measurement (as fanout.py's v1
clients do by not decoding their lists): each distinct frame text is decoded
once (``Decoder``), and a client holds the snapshot it was sent, shared, and
its own overlay of the changes applied since.
"""

import json


class Decoder:
    """Decode each distinct frame once; clients sent equal text share the result."""

    def __init__(self):
        self.frames = {}

    def __call__(self, text: str) -> dict:
        message = self.frames.get(text)
        if message is None:
            message = json.loads(text)
            if message.get("type") == "snapshot":
                message["users"] = {user["id"]: user for user in message["users"]}
            self.frames[text] = message
        return message


class HeldList:
    """The list one client holds: a shared snapshot, and this client's changes since."""

    __slots__ = ("changed", "epoch", "snapshot", "version")

    def __init__(self):
        self.epoch: str | None = None
        self.version: int | None = None
        self.snapshot: dict = {}  # id -> user, shared with the clients sent the same one
        self.changed: dict = {}  # id -> user, or None once deleted

    def apply(self, message: dict) -> bool:
        """
        Apply a snapshot or changes frame (others are not the list); return
        False for changes that do not start at the version held, which are
        not applied.
        """
        kind = message["type"]
        if kind == "snapshot":
            self.snapshot, self.changed = message["users"], {}
        elif kind == "changes":
            if message["epoch"] != self.epoch or message["from"] != self.version:
                return False
            for user in message["upserted"]:
                self.changed[user["id"]] = user
            for user_id in message["deleted"]:
                self.changed[user_id] = None
        else:
            return True
        self.epoch, self.version = message["epoch"], message["version"]
        return True

    def get(self, user_id: str) -> dict | None:
        if user_id in self.changed:
            return self.changed[user_id]
        return self.snapshot.get(user_id)

    def resume_query(self) -> str:
        """The query string that resumes from the list held, if any."""
        if self.version is None:
            return ""
        return f"?epoch={self.epoch}&version={self.version}"


class Truth:
    """The list as the server has it (from REST), to check held lists against."""

    def __init__(self, users: list):
        self.users = {user["id"]: user for user in users}
        self.differences = {}  # id(snapshot) -> the ids where that snapshot differs

    def held_by(self, held: HeldList) -> bool:
        """Whether ``held`` is this list: O(size of its changes), once a snapshot was compared."""
        snapshot = held.snapshot
        if id(snapshot) not in self.differences:
            self.differences[id(snapshot)] = {
                user_id
                for user_id in snapshot.keys() | self.users.keys()
                if snapshot.get(user_id) != self.users.get(user_id)
            }
        to_check = self.differences[id(snapshot)] | held.changed.keys()
        return all(held.get(user_id) == self.users.get(user_id) for user_id in to_check)
