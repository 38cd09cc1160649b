"""A client for usersite's live users socket, protocol v2."""

from .backoff import Backoff
from .errors import CommandError, HandshakeError, InvalidQueryError, OutOfSyncError
from .live import LiveUsers
from .query import Query
from .userlist import Update, UserList, Users

__all__ = [
    "Backoff",
    "CommandError",
    "HandshakeError",
    "InvalidQueryError",
    "LiveUsers",
    "OutOfSyncError",
    "Query",
    "Update",
    "UserList",
    "Users",
]
