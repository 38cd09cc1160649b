"""
The live list socket, protocol v1.

On connect the client gets the list; after every change it gets the list
again. It may send ``__addUser__`` or ``{"action": "create", "name": ...,
"email": ...}``; anything else gets an error frame, to it alone, as do frames
over USERS_MAX_FRAME_LENGTH characters and creates over the socket's rate
limit (USERS_SOCKET_CREATE_RATE per second, bursts of USERS_SOCKET_CREATE_BURST).
"""

import asyncio
import logging
from contextlib import suppress

from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError

from . import services, snapshots
from .permissions import may_write
from .relay import relay
from .serializers import UserSerializer
from .throttling import TokenBucket

# Selected when the client offers it; apps that present a token must (users.middleware).
SUBPROTOCOL = "users.v1"
ADD_USER_COMMAND = "__addUser__"
CREATE_ACTION = "create"

# What a send to a client that has left raises: uvicorn's ClientDisconnected is
# an OSError, daphne's (runserver's) is autobahn's Disconnected. Its disconnect
# message follows either way.
CLIENT_GONE = (OSError, Disconnected)

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

    The process's Relay, not each socket, listens to the users group
    (users.relay), so a socket has no channel-layer channel of its own.
    Snapshots reach the client through a one-place mailbox: a newer one
    replaces one not yet sent, so a slow client costs at most one pending list,
    and the relay drops one whose send has waited USERS_SLOW_CLIENT_TIMEOUT
    seconds. Where the server gives no backpressure (daphne), ``send`` never
    waits and every list is sent.
    """

    gave_up = False
    sender: asyncio.Task | None = None  # runs only while a list is being sent
    sending_since: float | None = None  # when the send that has not finished began
    create_allowance: TokenBucket | None = None  # made by the first create: idle sockets stay small
    groups = ()  # the relay is the group's member; and no list per instance

    async def __call__(self, scope, receive, send):
        """
        Dispatch the client's messages; end quietly when ``send_newest`` gave up on it.

        With no channel layer there is one source of messages, so this awaits it
        directly rather than through channels' ``await_many_dispatch``, whose
        task and wait per idle socket cost about 4 KB (docs/performance.md).
        """
        self.scope, self.channel_layer, self.base_send = scope, None, send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            if not self.gave_up:
                raise
        finally:
            relay().discard(self)

    async def connect(self):
        """Accept the socket, register with the relay and send the current list."""
        self.consumer_task = asyncio.current_task()
        # The newest version offered, and its snapshot until it is sent: an idle
        # socket holds neither a list nor a task.
        self.version = -1
        self.unsent: snapshots.Snapshot | None = None
        offered = self.scope.get("subprotocols", ())
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        # Registered before reading the list, so that no change falls in between.
        await relay().add(self)
        self.offer(await snapshots.acurrent_snapshot())

    async def disconnect(self, code):
        """Stop sending."""
        if self.sender is not None:
            self.sender.cancel()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Decode a frame; answer what is not a command with an error frame."""
        if text_data is None:
            await self.send_error("unsupported_frame", "Send text frames, not binary ones.")
        elif len(text_data) > settings.USERS_MAX_FRAME_LENGTH:
            await self.send_error(
                "too_large", f"Send at most {settings.USERS_MAX_FRAME_LENGTH} characters a frame."
            )
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

    def offer(self, snapshot: snapshots.Snapshot) -> None:
        """Make ``snapshot`` the next list to send, unless the client has or awaits a newer one."""
        if snapshot.version > self.version:
            self.version, self.unsent = snapshot.version, snapshot
            if self.sender is None:
                self.sender = asyncio.create_task(self.send_newest())

    async def send_newest(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.unsent is not None:
                snapshot, self.unsent = self.unsent, None
                self.sending_since = loop.time()
                await self.send(text_data=snapshot.text)
                self.sending_since = None
        except CLIENT_GONE:
            pass
        except Exception:
            logger.exception("Could not send the users list; closing that socket")
            self.end()
        finally:
            self.sender = None

    def end(self) -> None:
        """End this consumer and any send it is stuck in; the server then closes the connection."""
        # Not even a close frame would get past a client's unread data.
        self.gave_up = True
        self.consumer_task.cancel()
        if self.sender is not None:
            self.sender.cancel()

    async def create_user(self, data: dict | None) -> None:
        if self.create_allowance is None:
            self.create_allowance = TokenBucket(
                settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST
            )
        if not self.create_allowance.take():
            await self.send_error(
                "rate_limited",
                f"Create at most {settings.USERS_SOCKET_CREATE_RATE:g} users a second "
                f"(bursts of {settings.USERS_SOCKET_CREATE_BURST}); this one was not created.",
            )
            return
        try:
            await create_user_as(self.scope["user"], data)
        except PermissionDenied:
            await self.send_error("forbidden", "Log in as a user allowed to add users.")
        except ValidationError as exc:
            await self.send_error("invalid", "The user was not created.", errors=exc.detail)

    async def send_error(self, code: str, message: str, **extra) -> None:
        with suppress(*CLIENT_GONE):
            await self.send_json({"type": "error", "code": code, "message": message, **extra})
