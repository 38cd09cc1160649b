"""Run a job on request, folding the requests that arrive during a run into the next one."""

import asyncio
import contextvars
from collections.abc import Awaitable, Callable


class CoalescingRunner:
    """
    Run ``job`` on request: at most one run in flight and one pending.

    A request while idle runs at once. The requests that arrive while a run is
    under way share the next one, which starts after they asked, so none is
    left out and a burst costs as many runs as fit in its time.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, job: Callable[[], Awaitable]):
        self.loop, self.job = loop, job
        self.pending = False
        self.running: asyncio.Task | None = None

    def request(self) -> None:
        """Ask for a run that starts after now."""
        self.pending = True
        if self.running is None:
            # A context of its own, not the requester's.
            self.running = self.loop.create_task(self.run(), context=contextvars.Context())

    async def run(self) -> None:
        try:
            while self.pending:
                self.pending = False
                await self.job()
        finally:
            self.running = None
