"""A client for usersite's live users socket, protocol v2."""

from .backoff import Backoff
from .errors import CommandError, HandshakeError, OutOfSyncError
from .live import LiveUsers
from .userlist import Update, UserList, Users

__all__ = [
    "Backoff",
    "CommandError",
    "HandshakeError",
    "LiveUsers",
    "OutOfSyncError",
    "Update",
    "UserList",
    "Users",
]
