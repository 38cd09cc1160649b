"""
Catch this process up with what its relay may have missed, and drop stalled sockets.

A version can go missing without the layer going down: a publish that failed
(logged by the publisher), a message dropped over the layer's capacity, a
Redis restart that forgot every membership. Once a CHECK_INTERVAL the
watchdog compares the committed version with the newest one learnt of,
rejoins a layer that restarted and renews the membership before its expiry.
It also notices a database that went back to an older version (a restore
from a backup without ``manage.py newepoch``) and starts a new epoch
(users.live.restores).
"""

import asyncio
import logging
import time
from contextlib import suppress

from django.conf import settings

from .. import metrics, redis_clients
from . import restores
from .fanout import Fanout
from .member import GroupMember
from .supervision import DATABASE_OUTAGE, LAYER_ERRORS, stop_if_cancelled

CHECK_INTERVAL = 1.0  # seconds between checks: the delay of a catch-up

logger = logging.getLogger(__name__)


async def layer_identity(client) -> str | None:
    """
    Return what changes when the layer loses its groups, or None while it is down.

    For Redis that is the server's run id, new after every restart.
    """
    if client is None:
        return "in-memory"
    try:
        run_id = (await client.info("server"))["run_id"]
    except LAYER_ERRORS:
        run_id = None
    stop_if_cancelled()
    return run_id


class Watchdog:
    """Check once a CHECK_INTERVAL that the fan-out and the group member missed nothing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fanout: Fanout, member: GroupMember):
        self.loop, self.fanout, self.member = loop, fanout, member
        self.committed_at_last_check: tuple[str, int] | None = None

    async def committed(self, client=None) -> tuple[str, int]:
        """
        Return the committed version, starting a new epoch first if it is older
        than one learnt of before (the database went back).

        With ``client``, also record the newest version learnt of in Redis and
        compare with the newest any process recorded.
        """
        fanout = self.fanout
        known = (fanout.known_epoch, fanout.known_version)
        if client is not None and known[0]:
            with suppress(*LAYER_ERRORS):  # Redis down: this process's own knowledge
                known = (known[0], await restores.record(client, *known))
            stop_if_cancelled()
        committed = await restores.acurrent_version()
        DATABASE_OUTAGE.worked()
        if restores.went_back(known, committed):
            await restores.start_new_epoch(known, committed)
            committed = await restores.acurrent_version()
            fanout.learn(*committed)
        return committed

    async def after_join(self) -> None:
        """Catch up after the group member joined (``GroupMember.on_join``)."""
        if settings.REDIS_URL and not self.fanout.known_epoch:
            # The first join: notice a database restored while this process
            # was not running before any socket is sent a version of it.
            await self.check_with_redis()
        self.fanout.learn(*await self.committed())

    async def check_with_redis(self) -> None:
        """Start a new epoch if the database went back from a version another process heard of."""
        client = redis_clients.client()
        try:
            await restores.check_with_redis(client)
        finally:
            await client.aclose()
        stop_if_cancelled()

    async def record_known_version(self) -> None:
        """
        Record the newest version learnt of in Redis, for a process started after
        a restore: at shutdown, after the checks' last.
        """
        fanout = self.fanout
        if not settings.REDIS_URL or not fanout.known_epoch:
            return
        client = redis_clients.client()
        try:
            with suppress(*LAYER_ERRORS):
                await restores.record(client, fanout.known_epoch, fanout.known_version)
        finally:
            await client.aclose()

    async def watch(self) -> None:
        """
        Every CHECK_INTERVAL: drop stalled sockets, catch up (and notice a
        database that went back), rejoin a layer that restarted, renew the
        membership.
        """
        member = self.member
        await member.joined_once.wait()  # the member has made the channel to rejoin with
        client = redis_clients.client() if settings.REDIS_URL else None
        try:
            known = await layer_identity(client)
            renewed_at = time.monotonic()
            while True:
                stop_if_cancelled()
                await asyncio.sleep(CHECK_INTERVAL)
                self.drop_stalled_sockets()
                await self.catch_up(client)
                identity = await layer_identity(client)
                if identity is None:
                    if known is not None:
                        logger.warning("The channel layer is unreachable; sockets wait for it")
                    known = None
                elif identity != known:
                    logger.warning("The channel layer is back; rejoining the users group")
                    await member.rejoin()
                    known, renewed_at = identity, time.monotonic()
                elif time.monotonic() - renewed_at > member.renew_interval:
                    await member.renew()
                    renewed_at = time.monotonic()
        finally:
            if client is not None:
                await client.aclose()

    def drop_stalled_sockets(self) -> None:
        """
        End the sockets whose send has waited USERS_SLOW_CLIENT_TIMEOUT seconds for the client.

        A sweep once a check rather than a timeout around every send, which
        would cost every fan-out (docs/performance.md).
        """
        timeout = settings.USERS_SLOW_CLIENT_TIMEOUT
        stalled_since = self.loop.time() - timeout
        for socket in list(self.fanout.sockets):
            if socket.sending_since is not None and socket.sending_since < stalled_since:
                logger.info("Dropping a socket that took no list for %s s", timeout)
                metrics.SLOW_CLIENTS_DROPPED.inc()
                socket.end()

    async def catch_up(self, client=None) -> None:
        """
        Catch up with a version committed a whole check ago but never learnt of,
        and retry sockets that a failed refresh left behind; notice a database
        that went back (``committed``, with Redis' ``client`` if given).

        One small query per process and check bounds how long a client can
        stay behind.
        """
        fanout = self.fanout
        committed = self.committed_at_last_check
        if committed is not None and (
            committed[0] != fanout.known_epoch or committed[1] > fanout.known_version
        ):
            logger.warning("A published version went missing; catching up")
            metrics.RELAY_CATCH_UPS.labels(reason="missed_version").inc()
            fanout.learn(*committed)
        elif fanout.refresher.running is None and fanout.stale_sockets():
            metrics.RELAY_CATCH_UPS.labels(reason="stale_sockets").inc()
            fanout.refresher.request()
        self.committed_at_last_check = await self.committed(client)
