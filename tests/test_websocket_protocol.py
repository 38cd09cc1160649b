"""usersite.websocket_protocol: its frames against the websockets library's; sends after a close."""

import pytest
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

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
