"""
The cluster's duties that are no socket's: forgetting the expired history, and
noticing at startup a database restored while no process ran (users.restores).

Every server process runs a housekeeper, a task of its event loop started at
the ASGI lifespan's startup (``lifespan``), so a process that only serves REST,
with no socket ever opened, runs it too, and no other service or cron job is
needed. Servers that send no lifespan events (daphne, so runserver) start it
at their first connection instead (``StartHousekeeping``). A task rather than
a sweep after writes: the history expires whether or not anyone writes, and no
writer pays for it. Its database work runs in a thread of its own, never on
the event loop, nor on the thread that runs this process's REST views.

Every FORGET_INTERVAL each housekeeper offers to sweep; the first to claim the
period in the cache (Redis, shared by the cluster) does it, so the cluster
sweeps about once a period, and ``users.history.forget_expired_once`` keeps
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
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from users import redis_clients

from . import history, relay, restores

FORGET_INTERVAL = 60.0  # seconds between the cluster's sweeps of the expired history
STARTUP_CHECK_TIMEOUT = 5.0  # seconds a server's startup waits, at most, for the restore check
CLAIM_KEY = "users:history:sweep-claimed"

logger = logging.getLogger(__name__)


def claim_period(period: float) -> bool:
    """Claim this period's sweep for this process; False if another process has claimed it."""
    # A little under the period: the claimant's own next turn, a period
    # later, finds its claim expired.
    timeout = max(1, int(period * 0.9))
    try:
        return cache.add(CLAIM_KEY, os.getpid(), timeout=timeout)
    except relay.LAYER_ERRORS as exc:
        logger.info("No claim of the history's sweep (the cache failed: %s); sweeping", exc)
        return True


def sweep(period: float) -> tuple[int, int] | None:
    """
    Forget the expired history unless another process did this period, or is
    sweeping now: None then, else how many tombstones and receipts it forgot.
    """
    if not claim_period(period):
        return None
    return history.forget_expired_once()


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

    @staticmethod
    async def check_for_restore() -> None:
        """
        With Redis: start a new epoch if the database went back from a version
        recorded there. At startup, before the server serves anything, so that
        no write can carry the database back to that version first.
        """
        if not settings.REDIS_URL:
            return
        client = redis_clients.client()
        try:
            async with asyncio.timeout(STARTUP_CHECK_TIMEOUT):
                await restores.check_with_redis(client)
        except Exception as exc:
            # The relays check again at their first join and every second.
            logger.warning("Could not check the database for a restore at startup: %r", exc)
        finally:
            await client.aclose()


_housekeeper: Housekeeper | None = None


def housekeeper() -> Housekeeper:
    """Return the housekeeper of the running event loop: a server process runs one loop."""
    global _housekeeper
    loop = asyncio.get_running_loop()
    if _housekeeper is None or _housekeeper.loop is not loop:
        _housekeeper = Housekeeper(loop)
    return _housekeeper


async def lifespan(scope, receive, send) -> None:
    """ASGI lifespan: start the housekeeper; at shutdown, stop it and leave the relay's group."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await Housekeeper.check_for_restore()
            housekeeper().start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await housekeeper().stop()
            await relay.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


class StartHousekeeping:
    """
    ASGI middleware: start the housekeeper at the first connection, for servers
    that send no lifespan events (daphne, so runserver).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            housekeeper().start()
        return await self.app(scope, receive, send)
