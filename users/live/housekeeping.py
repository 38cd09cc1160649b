"""
The expiry of the live list's history: a duty of the cluster that is no socket's.

Every server process runs a housekeeper, a task of its event loop started at
the ASGI lifespan's startup (users.live.lifespan), so a process that only
serves REST, with no socket ever opened, runs it too, and no other service or
cron job is needed. A task rather than a sweep after writes: the history
expires whether or not anyone writes, and no writer pays for it. Its database
work runs in a thread of its own, never on the event loop, nor on the thread
that runs this process's REST views.

Every FORGET_INTERVAL each housekeeper offers to sweep; the first to claim the
period in the cache (Redis, shared by the cluster) does it, so the cluster
sweeps about once a period, and ``users.live.history.try_forget_expired`` keeps
sweeps one at a time whatever the cache says (Redis down, or no Redis: then
each process claims its own periods). A failure, the database's or the
cache's, is logged, and the next period tries again.

``manage.py forgetexpired`` sweeps once, for cron or by hand.
"""

import asyncio
import contextvars
import logging
import os
from contextlib import suppress

from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import DatabaseError

from . import history
from .supervision import LAYER_ERRORS

FORGET_INTERVAL = 60.0  # seconds between the cluster's sweeps of the expired history
CLAIM_KEY = "users:history:sweep-claimed"

logger = logging.getLogger(__name__)


def claim_period(period: float) -> bool:
    """Claim this period's sweep for this process; False if another process has claimed it."""
    # A little under the period: the claimant's own next turn, a period
    # later, finds its claim expired.
    timeout = max(1, int(period * 0.9))
    try:
        return cache.add(CLAIM_KEY, os.getpid(), timeout=timeout)
    except LAYER_ERRORS as exc:
        logger.info("No claim of the history's sweep (the cache failed: %s); sweeping", exc)
        return True


def sweep(period: float) -> tuple[int, int] | None:
    """
    Forget the expired history unless another process did this period, or is
    sweeping now: None then, else how many tombstones and receipts it forgot.
    """
    if not claim_period(period):
        return None
    return history.try_forget_expired()


# Its own thread: a large sweep must not hold up the REST views' one thread.
asweep = database_sync_to_async(sweep, thread_sensitive=False)


class Housekeeper:
    """This process's share of the cluster's duties, on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the periodic duties unless running."""
        if self.task is None:
            # A context of its own, not that of the request that started it.
            self.task = self.loop.create_task(self.run(), context=contextvars.Context())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FORGET_INTERVAL)
            await self.forget()

    async def forget(self) -> None:
        """Sweep the expired history if this process's turn; log, never raise, a failure."""
        try:
            forgotten = await asweep(FORGET_INTERVAL)
        except DatabaseError as exc:
            logger.warning("Could not forget the expired history; trying again later: %s", exc)
        except Exception:
            logger.exception("Could not forget the expired history; trying again later")
        else:
            if forgotten is not None and any(forgotten):
                logger.info("Forgot %s tombstones and %s command receipts", *forgotten)


_housekeeper: Housekeeper | None = None


def housekeeper() -> Housekeeper:
    """Return the housekeeper of the running event loop: a server process runs one loop."""
    global _housekeeper
    loop = asyncio.get_running_loop()
    if _housekeeper is None or _housekeeper.loop is not loop:
        _housekeeper = Housekeeper(loop)
    return _housekeeper
