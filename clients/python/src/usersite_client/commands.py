"""Commands sent to the server and not yet answered."""

import asyncio
import json
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .errors import CommandError

# The server's cap on a frame's characters. It answers a longer frame without
# reading it, so without the command's request_id: the command would wait forever.
MAX_FRAME_LENGTH = 65536


def encode_command(fields: dict[str, Any], request_id: str) -> str:
    """Return the command's frame; raise CommandError where the server could not read it."""
    text = json.dumps({**fields, "request_id": request_id}, ensure_ascii=False)
    if len(text) > MAX_FRAME_LENGTH:
        raise CommandError("too_large", f"The command is over {MAX_FRAME_LENGTH} characters.")
    return text


@dataclass
class _Pending:
    text: str
    answer: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    sent_on: ClientConnection | None = None


class Outbox:
    """
    The commands waiting for an ack or an error, by request id.

    Each goes again on every new connection until it is answered: the server
    carries out a request id once and answers a repeat with the first ack, so
    a command whose answer a dropped connection lost is neither lost nor doubled.
    """

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}

    async def run(
        self, request_id: str, text: str, socket: ClientConnection | None
    ) -> dict[str, Any]:
        """Send a command now if connected, else on connecting; return its ack or error frame."""
        pending = self._pending[request_id] = _Pending(text)
        try:
            if socket is not None:
                await self._send(pending, socket)
            return await pending.answer
        finally:
            del self._pending[request_id]

    async def resend(self, socket: ClientConnection) -> None:
        """Send, on a new connection, every command not answered on an earlier one."""
        for pending in list(self._pending.values()):
            if pending.sent_on is not socket and not pending.answer.done():
                await self._send(pending, socket)

    def answer(self, frame: dict[str, Any]) -> bool:
        """Hand an ack or error frame to its command; return whether one was waiting."""
        request_id = frame.get("request_id")
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None or pending.answer.done():
            return False
        pending.answer.set_result(frame)
        return True

    def fail(self, error: BaseException) -> None:
        """Raise ``error`` in every command waiting."""
        for pending in self._pending.values():
            if not pending.answer.done():
                pending.answer.set_exception(error)

    async def _send(self, pending: _Pending, socket: ClientConnection) -> None:
        pending.sent_on = socket
        with suppress(ConnectionClosed):  # the next connection sends it again
            await socket.send(pending.text)
