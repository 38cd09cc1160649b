"""usersite.websocket_protocol: its frames, a real connection, and sends after a close."""

import asyncio
import socket

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from usersite.connection_waits import Flag, Inbox
from usersite.websocket_protocol import SharedTextProtocol, text_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 3_000_000])
def test_a_shared_text_is_framed_as_the_library_frames_it(length):
    payload = b"x" * length
    assert text_header(length) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False)


@pytest.mark.parametrize("shared", [False, True])
async def test_a_send_after_the_server_closed_the_connection_says_the_client_is_gone(shared):
    # As after a keepalive ping that went unanswered: the consumer's send must
    # meet what a client that left raises (an OSError), not a RuntimeError.
    config = Config(app="usersite.asgi:application", ws=SharedTextProtocol)
    protocol = SharedTextProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.handshake_complete = protocol.close_sent = True
    message = {"type": "websocket.send", "text": "[]"}
    if shared:
        message["usersite.utf8"] = b"[]"
    with pytest.raises(ClientDisconnected):
        await protocol.send(message)


async def echo(scope, receive, send):
    """Accept a socket and send back each text it receives."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


@pytest.fixture
async def echo_server():
    """uvicorn with the project's protocol and ``echo``, in this event loop; and its port."""
    listening = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog
    config = uvicorn.Config(
        echo, ws=SharedTextProtocol, ws_per_message_deflate=False,  # as servers.py runs it
        lifespan="off", log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    yield server, listening.getsockname()[1]
    server.should_exit = True
    await serving
    listening.close()


@pytest.fixture
async def echo_connection(echo_server):
    """A client of ``echo_server`` after one echo, and the server's protocol object for it."""
    server, port = echo_server
    async with connect(f"ws://127.0.0.1:{port}/") as client:
        await client.send("open")
        assert await client.recv() == "open"
        (protocol,) = server.server_state.connections
        yield protocol, client


async def test_an_open_connection_keeps_no_handshake_and_still_talks(echo_connection):
    protocol, client = echo_connection
    assert protocol.request is None
    assert protocol.response is None
    assert isinstance(protocol.queue, Inbox)
    assert isinstance(protocol.writable, Flag)
    await client.send("second")
    assert await client.recv() == "second"


async def test_write_now_writes_a_frame_at_once_only_when_no_send_would_be_overtaken(
    echo_connection,
):
    protocol, client = echo_connection
    assert protocol.scope["extensions"]["usersite.utf8"]["write_now"](b"at once")
    assert await client.recv() == "at once"

    # A send waiting for the transport: a frame written now would overtake it.
    protocol.writable.clear()
    waiting = asyncio.create_task(
        protocol.send({"type": "websocket.send", "text": "first", "usersite.utf8": b"first"})
    )
    await asyncio.sleep(0)
    assert not protocol.write_now(b"second")
    protocol.writable.set()  # it is woken, but has not written yet
    assert not protocol.write_now(b"second")
    await waiting
    assert protocol.write_now(b"second")
    assert [await client.recv(), await client.recv()] == ["first", "second"]

    protocol.writable.clear()  # the transport's buffer is full
    assert not protocol.write_now(b"never")
