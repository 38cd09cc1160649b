"""Who may read and who may write users: one rule each for REST, the socket and the page."""

from django.conf import settings
from rest_framework.permissions import (
    SAFE_METHODS,
    BasePermission,
    DjangoModelPermissionsOrAnonReadOnly,
)


def may_read(user) -> bool:
    """
    Return whether ``user`` may read the list.

    With USERS_ANONYMOUS_READS anyone may, as the Dart example's clients (which
    send no credentials) need; otherwise only a login or a token.
    """
    return settings.USERS_ANONYMOUS_READS or user.is_authenticated


def has_write_permission(user, action: str) -> bool:
    """
    Return whether ``user`` may ``action`` ("add", "change" or "delete") users.

    With USERS_ANONYMOUS_WRITES anyone may, as in the Dart example; otherwise
    the model permission decides, so an anonymous visitor never may.
    """
    return settings.USERS_ANONYMOUS_WRITES or user.has_perm(f"users.{action}_user")


class CanReadUsers(BasePermission):
    """``may_read`` for REST reads (GET, HEAD, OPTIONS); writes are CanWriteUsers' to judge."""

    def has_permission(self, request, view):
        return request.method not in SAFE_METHODS or may_read(request.user)


class CanWriteUsers(DjangoModelPermissionsOrAnonReadOnly):
    """
    ``has_write_permission`` for REST: reads pass (CanReadUsers judges them); writes are
    open when USERS_ANONYMOUS_WRITES is on, and otherwise need DRF's per-method
    model permission.
    """

    def has_permission(self, request, view):
        return settings.USERS_ANONYMOUS_WRITES or super().has_permission(request, view)
