"""The Updates of a LiveUsers, handed to each of its iterators."""

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from .userlist import Update


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class _Subscriber:
    """One iterator's updates not yet taken."""

    def __init__(self, newest_only: bool):
        self.newest_only = newest_only
        self.items: deque[Update | _End] = deque()
        self.arrived = asyncio.Event()

    def put(self, item: Update | _End) -> None:
        # A list iterator wants the current list: the newest replaces one not taken.
        if self.newest_only and isinstance(item, Update) and self.items:
            self.items.pop()
        self.items.append(item)
        self.arrived.set()

    async def take(self) -> Update | _End:
        while not self.items:
            self.arrived.clear()
            await self.arrived.wait()
        return self.items.popleft()


class Feed:
    """
    Hand each Update to every subscriber, and end them all at once.

    A subscriber that comes late starts from the whole current list. One that
    wants only the newest list keeps at most one waiting, so a slow reader
    skips lists rather than piling them up (and never gets an older one).
    """

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._latest: Update | None = None
        self._end: _End | None = None

    def publish(self, update: Update) -> None:
        self._latest = update
        for subscriber in self._subscribers:
            subscriber.put(update)

    def end(self, error: BaseException | None = None) -> None:
        """End every subscription, raising ``error`` in each if there is one."""
        if self._end is None:
            self._end = _End(error)
            for subscriber in self._subscribers:
                subscriber.put(self._end)

    async def subscribe(self, *, newest_only: bool) -> AsyncIterator[Update]:
        """Yield the current list as a snapshot, if there is one, then each Update."""
        subscriber = _Subscriber(newest_only)
        if self._latest is not None:
            subscriber.put(replace(self._latest, snapshot=True, upserted=(), deleted=()))
        if self._end is not None:
            subscriber.put(self._end)
        self._subscribers.add(subscriber)
        try:
            while True:
                item = await subscriber.take()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self._subscribers.discard(subscriber)
