"""
Keep the relay's long-running tasks alive: restart a task that fails, wait out a layer outage.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from ..outages import DATABASE_UNREACHABLE, Outage

# Errors of a Redis that is down or restarting (the layer's, and the cache's).
LAYER_ERRORS = (RedisError, OSError)

OUTAGE_RETRY_INTERVAL = 0.1  # seconds between attempts to reach a layer that is down
FAILURE_RETRY_FIRST, FAILURE_RETRY_MAX = 0.1, 10.0  # backoff after any other failure

logger = logging.getLogger(__name__)

# The relay's reads wait while the database is down: logged once (users.outages).
DATABASE_OUTAGE = Outage(
    logger,
    "The relay cannot reach the database; sockets wait until it is back",
    "The relay reaches the database again",
)


def stop_if_cancelled() -> None:
    """
    Raise CancelledError in a task that was asked to stop but runs on.

    redis-py's asyncio client can swallow a cancellation that arrives during a
    command, and return the command's result or report it as a failure
    (redis/redis-py#2028, #2551). A task that runs on keeps its loop from
    closing.
    """
    if asyncio.current_task().cancelling():
        raise asyncio.CancelledError


async def supervise(loop: asyncio.AbstractEventLoop, job: Callable[[], Awaitable]) -> None:
    """Run ``job`` for the life of the loop, restarting it whenever it fails."""
    delay = FAILURE_RETRY_FIRST
    while True:
        started = loop.time()
        try:
            await job()
        except Exception as exc:
            stop_if_cancelled()  # a cancellation that redis-py reported as a failure
            if isinstance(exc, DATABASE_UNREACHABLE):
                DATABASE_OUTAGE.failed(exc)
            if isinstance(exc, LAYER_ERRORS + DATABASE_UNREACHABLE):
                # An outage, reported once (the watchdog reports the layer's); try again soon.
                logger.debug("The relay's %s waits for an outage: %s", job.__name__, exc)
                await asyncio.sleep(OUTAGE_RETRY_INTERVAL)
                continue
            if loop.time() - started > FAILURE_RETRY_MAX:
                delay = FAILURE_RETRY_FIRST  # it had run well for a while: start over
            logger.exception("The relay's %s failed; restarting in %.1f s", job.__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, FAILURE_RETRY_MAX)
