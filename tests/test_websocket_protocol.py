"""usersite.websocket_protocol: its frames against the websockets library's; a real connection."""

import asyncio
import socket

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from usersite.connection_waits import Flag, Inbox
from usersite.websocket_protocol import SharedTextProtocol, drop_parsed_request, text_header


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
        assert protocol.conn.parser.gi_code is Protocol.parse.__code__  # not the request's parser
        await client.send("second")
        assert await client.recv() == "second"


def handshake_read(extra: bytes = b"") -> ServerProtocol:
    """websockets' server side of a connection that has read a handshake, then ``extra``."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    client.send_request(client.connect())
    server = ServerProtocol()
    server.receive_data(b"".join(client.data_to_send()) + extra)
    (request,) = server.events_received()
    server.send_response(server.accept(request))
    return server


def test_a_restarted_parser_still_reads_frames():
    server = handshake_read()
    drop_parsed_request(server)
    assert server.parser.gi_code is Protocol.parse.__code__  # no longer the request's parser
    server.receive_data(Frame(Opcode.TEXT, b"hello").serialize(mask=True))
    assert [event.data for event in server.events_received()] == [b"hello"]


def test_a_parser_in_the_middle_of_a_frame_is_left_as_it_is():
    frame = Frame(Opcode.TEXT, b"hello").serialize(mask=True)
    server = handshake_read(frame[:3])
    drop_parsed_request(server)
    assert server.parser.gi_code is ServerProtocol.parse.__code__
    server.receive_data(frame[3:])
    assert [event.data for event in server.events_received()] == [b"hello"]
