"""
The live list socket: protocol v1 (the whole list after every change) and v2
(change sets, resume, acknowledged writes), chosen by subprotocol (users.sockets.routing).

Frames over USERS_MAX_FRAME_LENGTH characters, binary frames and what is not a
command get an error frame, to the sender alone, as do writes over the socket's
rate limit (USERS_SOCKET_CREATE_RATE per second, bursts of
USERS_SOCKET_CREATE_BURST).
"""

import asyncio
import logging
import re
from contextlib import suppress
from dataclasses import asdict
from urllib.parse import parse_qs
from uuid import uuid4

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from .. import commands, metrics
from ..live.relay import relay
from ..live.snapshots import Frame
from ..queries import InvalidQueryError, Query
from ..throttling import TokenBucket
from .handshake import requester

ADD_USER_COMMAND = "__addUser__"
QUERY_ACTION = "query"
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")  # a v2 client's own random name
CREATE_ACTION = "create"
# An ASGI extension of the project's uvicorn protocol: a text send may carry
# its UTF-8 bytes (usersite.websocket_protocol).
SHARED_UTF8 = "usersite.utf8"

# What a send to a client that has left raises: uvicorn's ClientDisconnected is
# an OSError, daphne's (runserver's) is autobahn's Disconnected. Its disconnect
# message follows either way.
CLIENT_GONE = (OSError, Disconnected)

logger = logging.getLogger(__name__)


class LiveListConsumer(AsyncJsonWebsocketConsumer):
    """
    Keep one client on the newest list; the protocol subclasses say in what frames.

    The process's Relay, not each socket, listens to the users group
    (users.live.relay), so a socket has no channel-layer channel of its own. A
    frame is written at once where the server can take it without a wait;
    otherwise it goes through a one-place mailbox: a newer one replaces one not
    yet sent, so a slow client costs at most one pending frame, and the relay
    drops one whose send has waited USERS_SLOW_CLIENT_TIMEOUT seconds. Where
    the server gives no backpressure (daphne), ``send`` never waits and every
    frame is sent. The relay reaches it as a users.live.subscriber.Subscriber.
    """

    protocol: int
    subprotocol: str
    gave_up = False
    sender: asyncio.Task | None = None  # runs only while a frame is being sent
    sending_since: float | None = None  # when the send that has not finished began
    write_allowance: TokenBucket | None = None  # made by the first write: idle sockets stay small
    query: Query | None = None  # a live query's window instead of the whole list (v2)
    list_at: tuple[str | None, int | None] = (None, None)  # (epoch, version) the client holds
    groups = ()  # the relay is the group's member; and no list per instance

    async def __call__(self, scope, receive, send):
        """
        Dispatch the client's messages; end quietly when ``send_newest`` gave up on it.

        With no channel layer there is one source of messages, so this awaits it
        directly rather than through channels' ``await_many_dispatch``, whose
        task and wait per idle socket cost memory (docs/performance.md).
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

    async def dispatch(self, message):
        """
        Run the message's handler, without channels' thread hop before it to
        close old database connections: this consumer's database calls close
        their own (channels' database_sync_to_async does), and in a reconnect
        storm every connect queued for that hop on asgiref's one thread.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        """Accept the socket and register with the relay, which sends the current list."""
        self.consumer_task = asyncio.current_task()
        # The newest version offered, and its frame until it is sent: an idle
        # socket holds neither a list nor a task.
        self.version = -1
        self.unsent: Frame | None = None
        offered = self.scope.get("subprotocols", ())
        await self.accept(self.subprotocol if self.subprotocol in offered else None)
        if await self.accepted():
            await relay().add(self)

    async def accepted(self) -> bool:
        """Speak to the client before its first list, if the protocol has to; False: send none."""
        return True

    async def websocket_disconnect(self, message):
        """
        End, without channels' thread hop to close old database connections
        (as ``dispatch``): when thousands of clients leave at once, each
        queued for it on asgiref's one thread.
        """
        await self.disconnect(message["code"])
        raise StopConsumer()

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
            await self.add_user()
        else:
            try:
                content = await self.decode_json(text_data)
            except (ValueError, RecursionError):
                await self.send_error("invalid_json", "The frame is not valid JSON.")
            else:
                await self.receive_json(content)

    async def add_user(self) -> None:
        """Answer ``__addUser__``."""
        raise NotImplementedError

    def offer(self, frame: Frame) -> None:
        """Make ``frame`` the next to send, unless the client has or awaits a newer list."""
        if frame.version <= self.version:
            return
        self.version = frame.version
        if self.sender is None and self.written_now(frame):
            return
        self.unsent = frame
        if self.sender is None:
            self.sender = asyncio.create_task(self.send_newest())

    def written_now(self, frame: Frame) -> bool:
        """
        Hand ``frame`` to the transport at once if the server can take it
        without a wait (the project's uvicorn protocol, usersite.websocket_protocol):
        a fan-out makes no task per socket that keeps up. False: send it the
        waiting way.
        """
        shared_utf8 = (self.scope.get("extensions") or {}).get(SHARED_UTF8)
        if not shared_utf8 or not shared_utf8["write_now"](frame.utf8):
            return False
        self.handing(frame)
        metrics.frame_sent(self.protocol, frame.kind)
        return True

    async def send_newest(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.unsent is not None:
                frame, self.unsent = self.unsent, None
                self.handing(frame)
                self.sending_since = loop.time()
                await self.send_frame(frame)
                self.sending_since = None
                metrics.frame_sent(self.protocol, frame.kind)
        except CLIENT_GONE:
            pass
        except Exception:
            logger.exception("Could not send the users list; closing that socket")
            self.end()
        finally:
            self.sender = None

    async def send_frame(self, frame: Frame) -> None:
        """
        Send a list frame; with its UTF-8 bytes where the server takes them, so
        that every socket's send of it shares those bytes rather than holding a
        copy while the client is slow (usersite.websocket_protocol).
        """
        message = {"type": "websocket.send", "text": frame.text}
        if SHARED_UTF8 in (self.scope.get("extensions") or ()):
            message[SHARED_UTF8] = frame.utf8
        await self.base_send(message)

    def handing(self, frame: Frame) -> None:
        """Note that ``frame`` goes to the transport now: the client will hold its list."""

    def needs_whole_list(self) -> None:
        """Forget what was offered: the versions of a new epoch say nothing of it."""
        self.version = -1

    def up_to_date_at(self, version: int) -> None:
        """Note that ``version`` changed nothing the client shows."""
        self.version = version

    def end(self) -> None:
        """End this consumer and any send it is stuck in; the server then closes the connection."""
        # Not even a close frame would get past a client's unread data.
        self.gave_up = True
        self.consumer_task.cancel()
        if self.sender is not None:
            self.sender.cancel()

    async def take_write_allowance(self, **extra) -> bool:
        """Take one write from the socket's allowance, or tell the client it is spent."""
        if self.write_allowance is None:
            self.write_allowance = TokenBucket(
                settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST
            )
        if self.write_allowance.take():
            return True
        metrics.RATE_LIMITED.labels(via="socket").inc()
        await self.send_error(
            "rate_limited",
            self.rate_limited_message.format(
                rate=settings.USERS_SOCKET_CREATE_RATE, burst=settings.USERS_SOCKET_CREATE_BURST
            ),
            **extra,
        )
        return False

    async def carry_out(self, command, *args, **extra) -> dict | None:
        """
        Run a write ``command(*args)`` in one transaction on the database thread;
        return its ack's content, or None once an error frame (with ``extra``)
        has answered it.

        Whatever fails gets an answer: an exception that escaped the consumer
        would close the socket without one.
        """
        try:
            return await database_sync_to_async(commands.in_one_transaction)(command, *args)
        except commands.CommandError as exc:
            errors = {} if exc.errors is None else {"errors": exc.errors}
            await self.send_error(exc.code, exc.message, **extra, **errors)
        except Exception:
            logger.exception("A socket command failed")
            await self.send_error(
                "server_error", "The server failed to carry out the command.", **extra
            )
        return None

    async def send_error(self, code: str, message: str, **extra) -> None:
        metrics.ERROR_FRAMES.labels(code=code).inc()
        with suppress(*CLIENT_GONE):
            await self.send_json({"type": "error", "code": code, "message": message, **extra})


class UserListConsumer(LiveListConsumer):
    """
    Protocol v1: the whole list, as a bare JSON array, on connect and after every change.

    The client may send ``__addUser__`` or ``{"action": "create", "name": ...,
    "email": ...}``. Selected when the client offers ``users.v1`` (apps that
    present a token must, users.sockets.handshake), or no subprotocol.
    """

    protocol = 1
    subprotocol = "users.v1"
    rate_limited_message = (
        "Create at most {rate:g} users a second (bursts of {burst}); this one was not created."
    )

    async def add_user(self) -> None:
        await self.create_user(None)

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

    async def create_user(self, data: dict | None) -> None:
        if await self.take_write_allowance():
            await self.carry_out(commands.create_v1, requester(self.scope), data)


class UserChangesConsumer(LiveListConsumer):
    """
    Protocol v2: a snapshot or the changes since the version the client holds,
    then the changes after every commit; acknowledged, idempotent writes.

    A client resumes with ``?epoch=<epoch>&version=<version>``, and may follow
    a live query's window instead of the whole list (``search``, ``order``,
    ``limit``, ``offset`` in the URL, or the ``query`` action). The relay
    computes the frames; this socket only remembers which list the client
    holds (``list_at``), so an idle socket keeps no copy of the list.
    docs/protocol.md describes every frame.
    """

    protocol = 2
    subprotocol = "users.v2"
    rate_limited_message = (
        "Write at most {rate:g} times a second (bursts of {burst}); this one was not carried out."
    )
    query_allowance: TokenBucket | None = None  # made by the first query change
    client: str | None = None  # made by the first write: idle sockets stay small

    async def accepted(self) -> bool:
        parameters = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            self.query = Query.from_url(parameters)
        except InvalidQueryError as exc:
            await self.send_error("invalid_query", f"{exc} No list is sent until a valid query.")
            return False
        problem = self.read_resume(parameters)
        if problem is not None:
            await self.send_error("invalid", problem)
        return True

    def read_resume(self, parameters: dict[str, list[str]]) -> str | None:
        """Take the version the client holds from the URL; return what is wrong with it."""
        epoch, version = parameters.get("epoch"), parameters.get("version")
        if epoch is None and version is None:
            return None
        if epoch is None or version is None or len(epoch) > 1 or len(version) > 1:
            return "Resume with one epoch and one version, or neither; sending the whole list."
        text = version[0]
        if not (text.isascii() and text.isdigit() and len(text) < 19 and len(epoch[0]) <= 32):
            return "The version to resume from is not a version; sending the whole list."
        self.list_at = (epoch[0], int(text))
        return None

    def handing(self, frame: Frame) -> None:
        self.list_at = frame.list_at

    def anonymous_client(self) -> str:
        """
        Who this client is, for the request ids of an anonymous one: the URL's
        ``client`` (random, so that its retries after a reconnect are known
        again), or else this connection alone.
        """
        if self.client is None:
            query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
            given = query.get("client", [""])[-1]
            self.client = f"client:{given}" if CLIENT_ID.fullmatch(given) else f"socket:{uuid4()}"
        return self.client

    async def add_user(self) -> None:
        await self.send_error("unknown_action", f"{ADD_USER_COMMAND} is protocol v1's.")

    async def receive_json(self, content, **kwargs):
        """Run a command; acknowledge it to this client after the commit."""
        if not isinstance(content, dict):
            content = {}
        request_id = content.get("request_id")
        # Echoed in this command's error frames, where it is a request id.
        extra = {"request_id": request_id} if commands.is_request_id(request_id) else {}
        action = content.get("action")
        if action == QUERY_ACTION:
            await self.change_query(content, extra)
            return
        if not isinstance(action, str) or action not in commands.PERMISSION:
            await self.send_error(
                "unknown_action",
                'Send {"action": "create" | "update" | "delete" | "query", ...}.',
                **extra,
            )
            return
        if not await self.take_write_allowance(**extra):
            return
        result = await self.carry_out(
            commands.run, requester(self.scope), self.anonymous_client(), content, **extra
        )
        if result is not None:
            with suppress(*CLIENT_GONE):
                await self.send_json({"type": "ack", "request_id": request_id, **result})

    async def change_query(self, content: dict, extra: dict) -> None:
        """Follow another window: an ack, then its snapshot; on an error, the old one."""
        if self.query_allowance is None:
            self.query_allowance = TokenBucket(
                settings.USERS_SOCKET_QUERY_RATE, settings.USERS_SOCKET_QUERY_BURST
            )
        if not self.query_allowance.take():
            metrics.RATE_LIMITED.labels(via="socket").inc()
            await self.send_error(
                "rate_limited",
                f"Change the query at most {settings.USERS_SOCKET_QUERY_RATE:g} times a second "
                f"(bursts of {settings.USERS_SOCKET_QUERY_BURST}); this one was not.",
                **extra,
            )
            return
        try:
            query = Query.parse(content)
        except InvalidQueryError as exc:
            await self.send_error("invalid_query", str(exc), **extra)
            return
        # From now on the client is sent nothing of the old window but a frame
        # already on its way; the next refresh sends the new window's snapshot.
        self.query, self.list_at, self.version, self.unsent = query, (None, None), -1, None
        with suppress(*CLIENT_GONE):
            await self.send_json(
                {"type": "ack", "request_id": extra.get("request_id"), "query": asdict(query)}
            )
        await relay().add(self)
