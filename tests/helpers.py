"""Small helpers shared by test modules."""

import json

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


async def receive_list(communicator, timeout: float = 3) -> list:
    """Receive one frame and check that it is a list frame (a bare JSON array)."""
    frame = json.loads(await communicator.receive_from(timeout=timeout))
    assert isinstance(frame, list), frame
    return frame


def wire(user) -> dict:
    """The wire shape a client must see for ``user``."""
    return {"id": str(user.pk), "name": user.name, "email": user.email}


def make_account(username: str = "editor", *, perms=()):
    """Create a login account holding the given users.* permission codenames."""
    account = get_user_model().objects.create_user(username, password="pw-for-tests-only")
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="users", codename__in=perms)
    )
    return account


amake_account = sync_to_async(make_account)
