"""Opening a socket that speaks protocol v2, and telling a lost connection from a refusal."""

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .errors import HandshakeError

SUBPROTOCOL = "users.v2"
TOKEN_PREFIX = "token."

# What a lost network or a server that is away raises: worth connecting again.
# A handshake refused with a 4xx status is not, but for these two.
CONNECTION_LOST = (OSError, ConnectionClosed, InvalidHandshake)
STATUSES_WORTH_RETRYING = (408, 429)


def subprotocols(token: str | None) -> list[Subprotocol]:
    """Offer v2, and the token the same way, which keeps it out of URLs and access logs."""
    offered = [SUBPROTOCOL] + ([TOKEN_PREFIX + token] if token else [])
    return [Subprotocol(name) for name in offered]


async def open_socket(url: str, token: str | None, open_timeout: float) -> ClientConnection:
    """Connect to ``url``; raise HandshakeError where connecting again would not help."""
    try:
        socket = await connect(
            url,
            subprotocols=subprotocols(token),
            open_timeout=open_timeout,
            # Snapshots grow with the list, past websockets' 1 MiB default, which
            # would close each connection at its first snapshot, again and again.
            max_size=None,
        )
    except InvalidStatus as error:
        status = error.response.status_code
        if 400 <= status < 500 and status not in STATUSES_WORTH_RETRYING:
            raise HandshakeError(
                f"{url} refused the socket with HTTP {status}: check the URL and the token."
            ) from error
        raise
    if socket.subprotocol != SUBPROTOCOL:
        await socket.close()
        raise HandshakeError(
            f"{url} does not speak {SUBPROTOCOL} (it chose {socket.subprotocol!r}); "
            "upgrade the server or use protocol v1."
        )
    return socket
