"""A client for usersite's live users socket, protocol v2."""

from .backoff import Backoff
from .errors import CommandError, OutOfSyncError
from .userlist import Update, UserList, Users

__all__ = ["Backoff", "CommandError", "OutOfSyncError", "Update", "UserList", "Users"]
