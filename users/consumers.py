"""
The live list socket, protocol v1.

On connect the client gets the list; after every change it gets the list
again. It may send ``__addUser__`` or ``{"action": "create", "name": ...,
"email": ...}``; anything else gets an error frame, to it alone.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError

from . import services, snapshots
from .permissions import may_write
from .serializers import UserSerializer

ADD_USER_COMMAND = "__addUser__"
CREATE_ACTION = "create"


@database_sync_to_async
def create_user_as(requester, data: dict | None) -> None:
    """Create a user from wire ``data`` (None: a generated one) on behalf of ``requester``."""
    if not may_write(requester, "add"):
        raise PermissionDenied
    serializer = UserSerializer(data={"name": services.generated_name()} if data is None else data)
    serializer.is_valid(raise_exception=True)
    serializer.save()


class UserListConsumer(AsyncJsonWebsocketConsumer):
    groups = [snapshots.GROUP]

    async def connect(self):
        """Accept the socket and send the current list."""
        # Joined the group already (the base class does that first), so no
        # change is missed between this read and the first broadcast.
        self.sent_version = -1
        await self.accept()
        await self.users_snapshot((await snapshots.acurrent_snapshot()).as_event())

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Decode a frame; answer what is not a command with an error frame."""
        if text_data is None:
            await self.send_error("unsupported_frame", "Send text frames, not binary ones.")
        elif text_data == ADD_USER_COMMAND:
            await self.create_user(None)
        else:
            try:
                content = await self.decode_json(text_data)
            except (ValueError, RecursionError):
                await self.send_error("invalid_json", "The frame is not valid JSON.")
            else:
                await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        """Run a JSON command; ``create`` is the only action."""
        if isinstance(content, dict) and content.get("action") == CREATE_ACTION:
            await self.create_user(content)
        else:
            await self.send_error(
                "unknown_action",
                f'Send "{ADD_USER_COMMAND}" or {{"action": "{CREATE_ACTION}", "name": ..., '
                '"email": ...}.',
            )

    async def users_snapshot(self, event):
        """Forward a snapshot unless the client already has this version or a newer one."""
        snapshot = snapshots.Snapshot.from_event(event)
        if snapshot.version > self.sent_version:
            self.sent_version = snapshot.version
            await self.send(text_data=snapshot.text)

    async def create_user(self, data: dict | None) -> None:
        try:
            await create_user_as(self.scope["user"], data)
        except PermissionDenied:
            await self.send_error("forbidden", "Log in as a user allowed to add users.")
        except ValidationError as exc:
            await self.send_error("invalid", "The user was not created.", errors=exc.detail)

    async def send_error(self, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})
