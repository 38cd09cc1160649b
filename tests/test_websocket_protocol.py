"""usersite.websocket_protocol's frames against those of the websockets library it extends."""

import pytest
from websockets.frames import Frame, Opcode

from usersite.websocket_protocol import text_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 3_000_000])
def test_a_shared_text_is_framed_as_the_library_frames_it(length):
    payload = b"x" * length
    assert text_header(length) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False)
