"""
uvicorn's websockets-sansio protocol, writing a frame's text shared by every
socket sent it, and keeping less per idle connection.

uvicorn encodes a text frame's ``str`` to UTF-8 and builds the whole frame as
new bytes for each socket; a socket whose client reads slowly keeps those
bytes in its transport's buffer, so a multi-megabyte list sent to many slow
clients was held once per socket. This protocol offers an ASGI extension,
``usersite.utf8`` in the scope's ``extensions``: a ``websocket.send`` message
may then carry its text's UTF-8 bytes under that key too (the same bytes
object for every socket: users.sockets.consumers sends users.live.snapshots' frames so),
and the protocol writes the frame's few header bytes and those bytes as they
are. uvloop's transport keeps a reference to what it cannot send yet, not a
copy (asyncio's own loop copies into its buffer). The extension's
``write_now(utf8)`` writes such a frame synchronously when nothing else is
being sent and the transport takes writes, returning False otherwise: a
fan-out then needs no task per socket and frame to send to the sockets that
keep up (users.sockets.consumers).
servers.py runs uvicorn with it (``--ws usersite.websocket_protocol:SharedTextProtocol``).
"""

import struct

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from .connection_waits import Flag, Inbox

# The extension's name, and the key of the bytes in a websocket.send message.
UTF8_KEY = "usersite.utf8"

FIN_TEXT = 0x81  # a final frame, opcode text; a server's frames are not masked


def text_header(length: int) -> bytes:
    """The header of a server's final text frame of ``length`` bytes (RFC 6455, 5.2)."""
    if length < 126:
        return struct.pack("!BB", FIN_TEXT, length)
    if length < 1 << 16:
        return struct.pack("!BBH", FIN_TEXT, 126, length)
    return struct.pack("!BBQ", FIN_TEXT, 127, length)


class SharedTextProtocol(WebSocketsSansIOProtocol):
    """
    Send a text frame from the bytes the application gave, when it gave them;
    keep less per connection.

    uvicorn keeps the handshake's request and response (their headers as
    websockets parsed them) for the connection's life, beside the scope's own
    copy of the headers; nothing reads them after the answer is sent. Its
    message queue and writable event become usersite.connection_waits' smaller ones.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = Inbox()
        self.writable = Flag(True)
        self.sends_under_way = 0  # a frame is written at once only when none is

    def handle_connect(self, event) -> None:
        super().handle_connect(event)
        self.request = None  # the scope holds what the application may read of it

    async def run_asgi(self) -> None:
        self.scope["extensions"][UTF8_KEY] = {"write_now": self.write_now}
        await super().run_asgi()

    def write_now(self, utf8: bytes) -> bool:
        """
        Write a text frame of ``utf8`` now, if no send is under way (which it
        would overtake) and the transport takes writes; else False, writing nothing.
        """
        if self.sends_under_way or not self.writable.is_set() or not self.open_without_extensions():
            return False
        self.write_text(utf8)
        return True

    def write_text(self, utf8: bytes) -> None:
        # One system call for both (uvloop writes them as one vector), not one each.
        self.transport.writelines((text_header(len(utf8)), utf8))

    async def send(self, message) -> None:
        self.sends_under_way += 1
        try:
            await self.send_in_turn(message)
        finally:
            self.sends_under_way -= 1

    async def send_in_turn(self, message) -> None:
        if message["type"] == "websocket.send" and self.close_sent and self.handshake_complete:
            # The server closed the connection itself (a keepalive ping went
            # unanswered, a frame did not parse): the client is gone as surely
            # as if it had left, where uvicorn raises a bare RuntimeError.
            raise ClientDisconnected
        utf8 = message.get(UTF8_KEY) if message["type"] == "websocket.send" else None
        if utf8 is None:
            await super().send(message)
            if self.handshake_complete:
                self.response = None  # sent, or never to be: uvicorn reads it only to accept
            return
        await self.writable.wait()
        if self.open_without_extensions():
            self.write_text(utf8)
        else:
            # Not open (the parent raises what the application expects), or
            # with an extension such as deflate: the parent's way.
            await super().send(message)

    def open_without_extensions(self) -> bool:
        return (
            self.handshake_complete
            and not self.disconnected
            and not self.close_sent
            and self.initial_response is None
            and self.conn.state is State.OPEN
            and not self.conn.extensions
        )
