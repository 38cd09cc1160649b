"""usersite.websocket_protocol: its frames against the websockets library's; a real connection."""

import asyncio
import socket

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from usersite.connection_waits import Flag, Inbox
from usersite.websocket_protocol import SharedTextProtocol, text_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 3_000_000])
def test_a_shared_text_is_framed_as_the_library_frames_it(length):
    payload = b"x" * length
    assert text_header(length) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False)


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
    config = uvicorn.Config(echo, ws=SharedTextProtocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    yield server, listening.getsockname()[1]
    server.should_exit = True
    await serving
    listening.close()


async def test_an_open_connection_keeps_no_handshake_and_still_talks(echo_server):
    server, port = echo_server
    async with connect(f"ws://127.0.0.1:{port}/") as client:
        await client.send("first")
        assert await client.recv() == "first"
        (protocol,) = server.server_state.connections
        assert protocol.request is None
        assert protocol.response is None
        assert isinstance(protocol.queue, Inbox)
        assert isinstance(protocol.writable, Flag)
        await client.send("second")
        assert await client.recv() == "second"
