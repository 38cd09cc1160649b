"""LiveUsers: the list of users, or a window of it, kept current over protocol v2, and writes."""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection

from .backoff import Backoff
from .commands import Outbox, encode_command
from .connection import CONNECTION_LOST, open_socket
from .errors import CommandError, InvalidQueryError, OutOfSyncError
from .feed import Feed
from .query import PARAMETERS, Query
from .urls import parameter_names, resume_url, with_parameters
from .userlist import Update, UserList, Users

logger = logging.getLogger("usersite_client")


class LiveUsers:
    """
    The live list of users of a usersite server, and commands to change it.

    ::

        async with LiveUsers("ws://host/api/v1/users/ws", token=key) as live:
            user = await live.create(name="Ada", email="ada@example.org")
            async for users in live:
                ...  # {"1": {"id": "1", "name": ..., "email": ...}, ...}

    With ``search``, ``order``, ``limit`` or ``offset`` it follows that window
    of the list instead (docs/protocol.md, "Live queries"), in that order, and
    ``live.query(...)`` moves it to another; ``users.total`` counts every
    user that matches.

    It connects at ``async with``, and again after a lost connection (waiting
    ``reconnect``'s delays), resuming from the list it holds; it starts over
    from a snapshot when it cannot follow the server. Iterating yields the
    current list after each change; a reader slower than the changes skips
    lists, and never gets one older than the last.
    """

    # A rate-limited command waits and is sent again this many times before
    # CommandError("rate_limited") is raised; the server refills 5 writes a second.
    rate_limit_retries = 4
    # The first of those waits, in seconds; they double up to rate_limit_max_wait.
    rate_limit_wait = 0.25
    rate_limit_max_wait = 2.0
    # A command the server's database failed to carry out ("unavailable": not
    # written; "outcome_unknown": perhaps written) waits as a rate-limited one
    # does and is sent again with its request id, which the server never
    # carries out twice, this many times before CommandError is raised.
    unavailable_retries = 8

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        search: str = "",
        order: str = "id",
        limit: int | None = None,
        offset: int = 0,
        reconnect: Backoff | None = None,
        open_timeout: float = 10.0,
    ):
        if in_url := sorted(parameter_names(url) & set(PARAMETERS)):
            raise InvalidQueryError(
                f"Give {', '.join(in_url)} as LiveUsers' arguments, not in the URL: "
                "the client orders the window by them, and query() replaces them."
            )
        self.url, self.token, self.open_timeout = url, token, open_timeout
        # This client's name for the server's request-id receipts: a command
        # resent after a reconnect is known again, and never taken for another
        # anonymous client's.
        self.client = uuid.uuid4().hex
        self.reconnect = reconnect or Backoff()
        self._list = UserList(Query(search, order, limit, offset))
        # The query the server follows since it acknowledged it, until its snapshot comes.
        self._query_acked: Query | None = None
        self._feed = Feed()
        self._outbox = Outbox()
        self._socket: ClientConnection | None = None
        self._starting_over = False  # the next connection asks for a snapshot, not changes
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> "LiveUsers":
        self._runner = asyncio.create_task(self._keep_connected())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait([self._runner])
        self._end(None)

    async def __aiter__(self) -> AsyncIterator[Users]:
        async for update in self._feed.subscribe(newest_only=True):
            yield update.users

    def updates(self) -> AsyncIterator[Update]:
        """Yield every Update: the whole list on connecting, then each change set applied."""
        return self._feed.subscribe(newest_only=False)

    async def create(self, *, name: str, email: str = "") -> dict[str, str]:
        """Create a user; return it as the server stored it."""
        ack = await self._command({"action": "create", "name": name, "email": email})
        return ack["user"]

    async def update(
        self, id: str | int, *, name: str | None = None, email: str | None = None
    ) -> dict[str, str]:
        """Change the given fields of user ``id``; return the user as it is now."""
        fields = {"name": name, "email": email}
        changed = {key: value for key, value in fields.items() if value is not None}
        ack = await self._command({"action": "update", "id": str(id), **changed})
        return ack["user"]

    async def delete(self, id: str | int) -> str:
        """Delete user ``id``; return its id."""
        ack = await self._command({"action": "delete", "id": str(id)})
        return ack["deleted"]

    async def query(
        self, *, search: str = "", order: str = "id", limit: int | None = None, offset: int = 0
    ) -> None:
        """
        Follow another window on the same connection; return once the server acknowledged it.

        Arguments left out take their defaults, as in ``LiveUsers(...)``. The
        next snapshot is the new window; a reconnection asks for it too.
        """
        query = Query(search, order, limit, offset)
        try:
            await self._command(query.command())
        except CommandError as error:
            if error.code == "invalid_query":
                raise InvalidQueryError(error.message) from error
            raise

    async def _command(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Send a command until it is answered; return its ack, or raise its error."""
        if self._runner is None:
            raise RuntimeError("Send commands inside 'async with LiveUsers(...)'.")
        if self._failure is not None:
            raise self._failure
        request_id = uuid.uuid4().hex
        text = encode_command(fields, request_id)
        waits = Backoff(self.rate_limit_wait, self.rate_limit_max_wait)
        retries_left = {
            "rate_limited": self.rate_limit_retries,
            "unavailable": self.unavailable_retries,
            "outcome_unknown": self.unavailable_retries,
        }
        while True:
            answer = await self._outbox.run(request_id, text, self._socket)
            if answer.get("type") == "ack":
                return answer
            error = CommandError.from_frame(answer)
            if retries_left.get(error.code, 0) == 0:
                raise error
            # The same request id again: an earlier send of it may have been
            # carried out before a lost connection, and must not be doubled.
            retries_left[error.code] -= 1
            await asyncio.sleep(waits.next_delay())

    async def _keep_connected(self) -> None:
        """Follow the server's frames, connecting again whenever the connection is lost."""
        try:
            while True:
                try:
                    await self._follow(
                        await open_socket(self._url(), self.token, self.open_timeout)
                    )
                except OutOfSyncError as reason:
                    logger.warning("Starting over from a snapshot: %s", reason)
                    self._starting_over = True
                except CONNECTION_LOST as error:
                    logger.warning("Lost the connection to %s: %s", self.url, error)
                await asyncio.sleep(self.reconnect.next_delay())
        except Exception as error:
            self._end(error)

    def _url(self) -> str:
        url = with_parameters(self.url, client=self.client, **self._list.query.parameters())
        if self._starting_over or self._list.epoch is None:
            return url
        return resume_url(url, self._list.epoch, self._list.version)

    async def _follow(self, socket: ClientConnection) -> None:
        """Send the commands still unanswered, then apply frames until the connection ends."""
        async with socket:
            self._socket = socket
            try:
                await self._outbox.resend(socket)
                async for text in socket:
                    self._receive(text)
            finally:
                self._socket = None
                self._follow_acked_query()
        logger.warning("%s closed the connection (code %s)", self.url, socket.close_code)

    def _receive(self, text: str | bytes) -> None:
        frame = _decode(text)
        kind = frame.get("type")
        if kind in ("snapshot", "changes"):
            if self._query_acked is not None:
                if kind == "changes":
                    return  # of the window being left: the new one's snapshot replaces it
                self._follow_acked_query()
            update = self._list.apply(frame)
            # The connection works and the list follows it: the next loss
            # waits the shortest delay again, and may resume.
            self.reconnect.reset()
            self._starting_over = False
            if update is not None:
                self._feed.publish(update)
        elif kind in ("ack", "error"):
            if kind == "ack" and "query" in frame:
                # Noted before the next frame is read, as the snapshot after it is the new
                # window's (the newest ack's: the server may send one for several); and
                # from the ack, not the command: a query() cancelled once sent still counts.
                self._query_acked = _acked_query(frame)
            answered = self._outbox.answer(frame)
            if kind == "error" and not answered:  # about no command of ours: the resume, say
                if frame.get("code") == "invalid_query" and frame.get("request_id") is None:
                    # The URL's query: no list comes, on this connection or the next.
                    raise InvalidQueryError(str(frame.get("message")))
                logger.warning("The server says: %s: %s", frame.get("code"), frame.get("message"))
        # Frames of other types are ignored: a later server may add some.

    def _follow_acked_query(self) -> None:
        """Hold the acknowledged query's list from here on, starting from its snapshot."""
        if self._query_acked is not None:
            self._list = UserList(self._query_acked)
            self._query_acked = None

    def _end(self, error: BaseException | None) -> None:
        """Stop iterating and raise ``error`` in commands (or say that the LiveUsers is closed)."""
        self._failure = error or RuntimeError("This LiveUsers is closed.")
        self._feed.end(error)
        self._outbox.fail(self._failure)


def _acked_query(frame: dict[str, Any]) -> Query:
    try:
        return Query.from_frame(frame["query"])
    except InvalidQueryError as error:
        raise OutOfSyncError(f"an ack of a query that is not one: {error}") from None


def _decode(text: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError:
        raise OutOfSyncError("a frame that is not JSON") from None
    if not isinstance(frame, dict):
        raise OutOfSyncError("a frame that is not a JSON object")
    return frame
