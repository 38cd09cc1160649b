"""
The two waits of a uvicorn WebSocket connection, without asyncio's deques.

uvicorn's websockets-sansio protocol keeps an ``asyncio.Queue`` of messages for
the application and an ``asyncio.Event`` for "the transport takes writes": five
``collections.deque`` between them, each with its own block of 64 slots, on
every socket, idle or not. These keep a list and a future instead, made only
while something waits. usersite.websocket_protocol puts them in place of
uvicorn's own; they offer what uvicorn uses of those (tests/test_connection_waits.py
reads uvicorn's source to keep it so).
"""

import asyncio


class Inbox:
    """A FIFO of messages with one reader at a time: ``put_nowait``, ``get``, ``empty``."""

    __slots__ = ("items", "reader")

    def __init__(self):
        self.items = []  # few at a time: uvicorn stops reading while the app has one unread
        self.reader: asyncio.Future | None = None  # set while ``get`` waits

    def put_nowait(self, item) -> None:
        self.items.append(item)
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def empty(self) -> bool:
        return not self.items

    async def get(self):
        """Return the oldest message, waiting for one if there is none."""
        if self.reader is not None:
            # An ASGI application has one receive loop; a second would steal its messages.
            raise RuntimeError("Inbox.get is already waiting in another task")
        while not self.items:
            self.reader = asyncio.get_running_loop().create_future()
            try:
                await self.reader
            finally:
                self.reader = None
        return self.items.pop(0)


class Flag:
    """A flag that tasks can wait to be set: ``set``, ``clear``, ``is_set``, ``wait``."""

    __slots__ = ("value", "waiters")

    def __init__(self, value: bool = False):
        self.value = value
        self.waiters: list[asyncio.Future] | None = None  # made by the first wait on a clear flag

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> bool:
        """Return True once the flag is set (at once if it is)."""
        if self.value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self.waiters is not None and waiter in self.waiters:
                self.waiters.remove(waiter)
