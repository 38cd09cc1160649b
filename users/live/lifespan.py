"""
A server process's start and end, for the live list (the ASGI lifespan).

At startup: notice a database restored while no process ran, before the
server serves anything, so that no write can carry the database back to that
version first (users.live.restores); then start the housekeeper
(users.live.housekeeping). At shutdown: stop it, record the newest version
the relay learnt of and leave the group. Servers that send no lifespan events
(daphne, so runserver) start the housekeeper at their first connection
instead (``StartHousekeeping``).
"""

import asyncio
import logging

from django.conf import settings

from .. import redis_clients
from . import relay, restores
from .housekeeping import housekeeper

STARTUP_CHECK_TIMEOUT = 5.0  # seconds a server's startup waits, at most, for the restore check

logger = logging.getLogger(__name__)


async def check_for_restore() -> None:
    """With Redis: start a new epoch if the database went back from a version recorded there."""
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


async def shutdown() -> None:
    """
    Record the newest version learnt of and leave the group.

    uvicorn ends on SIGTERM by raising the signal again once it has served, so
    no task of the loop runs after that. A member left behind is sent every
    change until the group expiry (a day by default).
    """
    current = relay.current()
    if current is not None and current.member.channel is not None:
        await current.watchdog.record_known_version()
        await current.member.leave()


async def lifespan(scope, receive, send) -> None:
    """ASGI lifespan: start the housekeeper; at shutdown, stop it and leave the relay's group."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await check_for_restore()
            housekeeper().start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await housekeeper().stop()
            await shutdown()
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
