"""Who may write users: one rule for REST and the socket."""

from django.conf import settings
from rest_framework.permissions import DjangoModelPermissionsOrAnonReadOnly


def has_write_permission(user, action: str) -> bool:
    """
    Return whether ``user`` may ``action`` ("add", "change" or "delete") users.

    With USERS_ANONYMOUS_WRITES anyone may, as in the Dart example; otherwise
    the model permission decides, so an anonymous visitor never may.
    """
    return settings.USERS_ANONYMOUS_WRITES or user.has_perm(f"users.{action}_user")


class CanWriteUsers(DjangoModelPermissionsOrAnonReadOnly):
    """
    ``has_write_permission`` for REST: reads are open to anyone; writes are open when
    USERS_ANONYMOUS_WRITES is on, and otherwise need DRF's per-method model permission.
    """

    def has_permission(self, request, view):
        return settings.USERS_ANONYMOUS_WRITES or super().has_permission(request, view)
