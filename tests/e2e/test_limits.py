"""Clients that hold connections without finishing a request cannot exhaust the server."""

import asyncio
import socket

import httpx
from websockets.asyncio.client import connect

from servers import SOCKET_PATH
from tests.e2e.clients import database_list, next_list

MAX_CONNECTIONS = 50


def open_stalled_connection(server) -> socket.socket:
    """Send half a handshake and stop, as a slowloris client does."""
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(
        f"GET {SOCKET_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode()
    )
    return stalled


async def test_stalled_connections_past_the_limit_get_503_not_more_of_the_server(start_server):
    server = start_server("uvicorn", SERVER_MAX_CONNECTIONS=str(MAX_CONNECTIONS))
    stalled = [open_stalled_connection(server) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.url}/api/v1/users")
        assert response.status_code == 503
        assert server.process.poll() is None
    finally:
        for connection in stalled:
            connection.close()
    await asyncio.sleep(0.5)  # the server notices the closed connections
    assert isinstance(await database_list(server), list)
    async with connect(server.ws_url) as ws:
        assert isinstance(await next_list(ws), list)
