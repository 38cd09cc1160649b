"""
The floor of the fan-out benchmark: what the server stack alone can do.

A bare ASGI 3 application, standard library only (no Django, no Channels, no
database, no channel layer), run by bench/fanout.py under the same uvicorn
command as the project (servers.py). It keeps the open sockets of
/api/v1/users/ws and an in-memory list that starts with FLOOR_USERS users of
the shape and sizes of the benchmark's prefilled ones. On ``POST
/api/v1/users`` it appends the user, encodes the list once and sends that one
text to every socket. Whatever the project's fan-out costs above this is the
project's own.

One process only: a create reaches the sockets of the process that took it.
It answers ``GET /healthz``, ``GET /api/v1/users`` (``{"users": [...]}``) and
``POST /api/v1/users`` with ``{"name": ...}``; nothing else (no validation,
no socket actions).
"""

import json
import os

from servers import SOCKET_PATH

USERS = [
    {"id": str(i + 1), "name": f"Bench user {i}", "email": f"user{i}@example.org"}
    for i in range(int(os.environ.get("FLOOR_USERS", 1000)))
]
SOCKET_PATHS = {SOCKET_PATH, f"{SOCKET_PATH}/"}
LIST_PATHS = {"/api/v1/users", "/api/v1/users/"}


def encode(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Floor:
    def __init__(self, users: list[dict]):
        self.users = users
        self.text = encode(users)  # the current list, encoded once per change
        self.sockets = set()  # the ASGI send callables of the open sockets

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def websocket(self, scope, receive, send):
        if (await receive())["type"] != "websocket.connect":
            return
        if scope["path"] not in SOCKET_PATHS:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": self.text})
        self.sockets.add(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass  # incoming frames are ignored
        finally:
            self.sockets.discard(send)

    async def publish(self) -> None:
        text = self.text
        # One send after another, not one task each under asyncio.gather: with
        # uvicorn's websockets-sansio protocol a send only frames the text and
        # writes it to the transport, and awaits nothing unless that client's
        # buffer is full; so a plain loop does the whole fan-out in one pass of
        # the event loop, where gather adds a task per socket for nothing.
        # Timed inside this server (300 sockets, M=1,000, 20 creates, twice
        # each): median 10.0-11.5 ms per fan-out one after another, 16.0-19.5 ms
        # with gather. A client with a full buffer would hold up the ones after
        # it, and a create arriving then could overtake this list; the
        # fan-out scenario's clients read, and its creates come one at a time.
        for send in tuple(self.sockets):
            try:
                await send({"type": "websocket.send", "text": text})
            except OSError:  # uvicorn's ClientDisconnected: closed meanwhile
                self.sockets.discard(send)

    async def http(self, scope, receive, send):
        method, path = scope["method"], scope["path"]
        if path == "/healthz" and method == "GET":
            await respond(send, 200, b'{"status":"ok"}')
        elif path in LIST_PATHS and method == "GET":
            await respond(send, 200, f'{{"users":{self.text}}}'.encode())
        elif path in LIST_PATHS and method == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            user = {
                "id": str(len(self.users) + 1),
                "name": json.loads(body)["name"].strip(),
                "email": "",
            }
            self.users.append(user)
            self.text = encode(self.users)
            await respond(send, 201, encode(user).encode())
            await self.publish()
        else:
            await respond(send, 404, b'{"detail":"Not found."}')


async def respond(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = Floor(USERS)
