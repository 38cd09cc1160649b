"""A websockets server on 127.0.0.1 that a test scripts frame by frame."""

import asyncio
import json
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from usersite_client import Backoff, LiveUsers
from websockets.asyncio.server import Server, ServerConnection, serve

TIMEOUT = 5  # seconds any one step may take; each takes milliseconds


def live_users(server: "ScriptedServer", token: str | None = None, **kwargs) -> LiveUsers:
    """A LiveUsers of ``server`` that reconnects within milliseconds."""
    return LiveUsers(server.url(), token, reconnect=Backoff(0.01, 0.05), **kwargs)


async def within(awaitable):
    async with asyncio.timeout(TIMEOUT):
        return await awaitable


class Session:
    """One connection of the client: what it asked for, and the frames it sends and gets."""

    def __init__(self, socket: ServerConnection):
        self.socket = socket

    @property
    def offered(self) -> list[str]:
        """The subprotocols the client offered, in its order."""
        headers = self.socket.request.headers.get_all("Sec-WebSocket-Protocol")
        return [name.strip() for header in headers for name in header.split(",")]

    @property
    def query(self) -> dict[str, list[str]]:
        """The URL's parameters, but the client's name (``client``)."""
        query = parse_qs(urlsplit(self.socket.request.path).query)
        query.pop("client", None)
        return query

    @property
    def client(self) -> str:
        """The name the client gave itself for its request ids."""
        return parse_qs(urlsplit(self.socket.request.path).query)["client"][0]

    async def send(self, frame: dict) -> None:
        await self.socket.send(json.dumps(frame))

    async def receive(self) -> dict:
        return json.loads(await within(self.socket.recv()))

    def drop(self) -> None:
        """Cut the connection without a closing handshake, as a lost network does."""
        self.socket.transport.abort()


class ScriptedServer:
    """
    Accept connections and hand each to the test as a Session.

    ``refusals`` are the HTTP statuses that answer the first handshakes, one
    each; ``subprotocols`` the ones it speaks.
    """

    def __init__(self, *, refusals: tuple[HTTPStatus, ...] = (), subprotocols=("users.v2",)):
        self.refusals = list(refusals)
        self.subprotocols = list(subprotocols) or None
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()
        self.server: Server | None = None

    async def __aenter__(self) -> "ScriptedServer":
        self.server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            subprotocols=self.subprotocols,
            process_request=self._refuse,
        )
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        await self.server.wait_closed()

    def url(self, query: str = "") -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/api/v1/users/ws{query}"

    async def session(self) -> Session:
        """Return the client's next connection."""
        return await within(self.sessions.get())

    def _refuse(self, connection, request):
        if self.refusals:
            return connection.respond(self.refusals.pop(0), "Refused by the script.\n")
        return None

    async def _handle(self, socket: ServerConnection) -> None:
        self.sessions.put_nowait(Session(socket))
        await socket.wait_closed()
