"""
A TCP balancer on loopback, in the test's event loop, as a deployment puts one
before its server processes.

Each connection goes to the next backend in turn that accepts it, so a client
whose process died reconnects to another; ``cut`` breaks every connection
through it at once, as a network that drops them does.
"""

import asyncio
import itertools


class Balancer:
    def __init__(self, backend_ports: list[int]):
        self.backend_ports = backend_ports
        self.turn = itertools.count()
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.connections = 0  # how many it has relayed, for the test's figures
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> "Balancer":
        self.server = await asyncio.start_server(self.relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        self.cut()
        await self.server.wait_closed()

    @property
    def ws_url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/api/v1/users/ws"

    def cut(self) -> None:
        """Break every connection through the balancer (a reset on both sides)."""
        for client, backend in list(self.links):
            client.transport.abort()
            backend.transport.abort()

    async def relay(self, client_reader, client_writer) -> None:
        backend = await self.open_backend()
        if backend is None:
            client_writer.transport.abort()
            return
        backend_reader, backend_writer = backend
        link = (client_writer, backend_writer)
        self.links.add(link)
        self.connections += 1
        try:
            # One direction's end is the connection's: then both sides close.
            pipes = [
                asyncio.create_task(pipe(client_reader, backend_writer)),
                asyncio.create_task(pipe(backend_reader, client_writer)),
            ]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for task in pipes:
                task.cancel()
        finally:
            self.links.discard(link)
            client_writer.transport.abort()
            backend_writer.transport.abort()

    async def open_backend(self):
        for _ in self.backend_ports:
            port = self.backend_ports[next(self.turn) % len(self.backend_ports)]
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that process is down: the next one
        return None


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
