"""
The live list socket, protocol v1.

On connect the client gets the list; after every change it gets the list
again. It may send ``__addUser__`` or ``{"action": "create", "name": ...,
"email": ...}``; anything else gets an error frame, to it alone.
"""

import asyncio
import logging
from contextlib import suppress

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError

from . import membership, services, snapshots
from .permissions import may_write
from .serializers import UserSerializer

ADD_USER_COMMAND = "__addUser__"
CREATE_ACTION = "create"
SLOW_CLIENT_EVENT = "users.slow_client"
# WebSocket close code 1008 (policy violation): the client stopped taking lists.
SLOW_CLIENT_CLOSE_CODE = 1008

logger = logging.getLogger(__name__)


@database_sync_to_async
def create_user_as(requester, data: dict | None) -> None:
    """Create a user from wire ``data`` (None: a generated one) on behalf of ``requester``."""
    if not may_write(requester, "add"):
        raise PermissionDenied
    serializer = UserSerializer(data={"name": services.generated_name()} if data is None else data)
    serializer.is_valid(raise_exception=True)
    serializer.save()


class UserListConsumer(AsyncJsonWebsocketConsumer):
    """
    Keep one client on the newest list.

    Snapshots go through a one-place mailbox: a newer one replaces one the
    client has not taken yet, so a slow client costs at most one pending list,
    and one that takes none for USERS_SLOW_CLIENT_TIMEOUT seconds is closed.
    Where the server gives no backpressure (daphne), ``send`` never waits and
    every list is sent.
    """

    async def connect(self):
        """Join the group, accept the socket and send the current list."""
        self.newest: snapshots.Snapshot | None = None
        self.newest_arrived = asyncio.Event()
        self.sender = asyncio.create_task(self.send_newest())
        # Join before reading the list, so that no change falls in between.
        await membership.keeper().join(self)
        await self.accept()
        self.offer(await snapshots.acurrent_snapshot())

    async def disconnect(self, code):
        """Leave the group and stop sending."""
        self.sender.cancel()
        await membership.keeper().leave(self)

    async def dispatch(self, message):
        # Snapshots touch no database: skip the base class's connection
        # cleanup, a thread hop per message and socket.
        if message["type"] == snapshots.SNAPSHOT_EVENT:
            await self.users_snapshot(message)
        else:
            await super().dispatch(message)

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
        """Offer a published list to the client."""
        self.offer(snapshots.Snapshot.from_event(event))

    async def users_slow_client(self, event):
        """Close a socket whose client stopped taking lists."""
        logger.info("Closing a socket that took no list for %s s", event["timeout"])
        await self.disconnect(SLOW_CLIENT_CLOSE_CODE)
        # The close frame waits behind the unread data, so give up on it soon.
        with suppress(TimeoutError):
            async with asyncio.timeout(1):
                await self.close(SLOW_CLIENT_CLOSE_CODE)
        raise StopConsumer

    def offer(self, snapshot: snapshots.Snapshot) -> None:
        """Make ``snapshot`` the next list to send, unless a newer one is already there."""
        if self.newest is None or snapshot.version > self.newest.version:
            self.newest = snapshot
            self.newest_arrived.set()

    async def send_newest(self) -> None:
        sent_version = -1
        timeout = settings.USERS_SLOW_CLIENT_TIMEOUT
        while True:
            await self.newest_arrived.wait()
            self.newest_arrived.clear()
            snapshot = self.newest
            if snapshot.version <= sent_version:
                continue
            try:
                async with asyncio.timeout(timeout):
                    await self.send(text_data=snapshot.text)
            except TimeoutError:
                await self.channel_layer.send(
                    self.channel_name, {"type": SLOW_CLIENT_EVENT, "timeout": timeout}
                )
                return
            sent_version = snapshot.version

    async def create_user(self, data: dict | None) -> None:
        try:
            await create_user_as(self.scope["user"], data)
        except PermissionDenied:
            await self.send_error("forbidden", "Log in as a user allowed to add users.")
        except ValidationError as exc:
            await self.send_error("invalid", "The user was not created.", errors=exc.detail)

    async def send_error(self, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})
