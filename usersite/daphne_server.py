"""
daphne as this project runs it (``runserver``, and ``python -m usersite.daphne_server``).

autobahn applies daphne's cap on incoming messages (1 MiB by default) to what
the server sends as well: a list of about 15,000 users never reached a client,
each send failing with PayloadExceededError. Here the cap stays on what
clients send, and lists of any size go out. daphne and autobahn are pinned in
requirements.txt; tests/e2e/test_live_list.py sends a list over the cap.
"""

from daphne.cli import CommandLineInterface
from daphne.server import Server as DaphneServer
from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol


class WebSocketProtocol(DaphneWebSocketProtocol):
    """daphne's WebSocket protocol, its message cap on incoming messages only."""

    def sendMessage(self, payload, *args, **kwargs):  # noqa: N802 (autobahn's name)
        # Twisted runs one thing at a time: nothing is received while this sends.
        cap, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            super().sendMessage(payload, *args, **kwargs)
        finally:
            self.maxMessagePayloadSize = cap


class Server(DaphneServer):
    """daphne's server, its sockets built with the protocol above."""

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory):
        # DaphneServer.run() makes the factory, which no argument reaches.
        factory.protocol = WebSocketProtocol
        self._ws_factory = factory


class DaphneCommandLine(CommandLineInterface):
    server_class = Server


if __name__ == "__main__":
    DaphneCommandLine.entrypoint()
