"""Who may write users: one rule for REST and the socket."""

from django.conf import settings
from rest_framework.permissions import BasePermission


def may_write(user, action: str) -> bool:
    """
    Return whether ``user`` may ``action`` ("add", "change" or "delete") users.

    With USERS_ANONYMOUS_WRITES anyone may, as in the Dart example; otherwise
    the model permission decides, so an anonymous visitor never may.
    """
    return settings.USERS_ANONYMOUS_WRITES or user.has_perm(f"users.{action}_user")


class CanWriteUsers(BasePermission):
    """Reads are open; writes follow ``may_write``."""

    actions = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}

    def has_permission(self, request, view):
        action = self.actions.get(request.method)
        return action is None or may_write(request.user, action)
