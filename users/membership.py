"""
Keep this process's sockets in the users group.

Group membership lives in the channel layer, which can lose it: channels-redis
prunes a membership older than ``group_expiry``, and a Redis restart without
persistence wipes them all. A keeper per process (per event loop) therefore
re-adds every local socket well before the expiry, and as soon as Redis
answers again after an outage or a restart, when it also hands each socket the
current list, since what was published meanwhile is lost.
"""

import asyncio
import logging
import time
import weakref
from contextlib import suppress

import redis.asyncio as redis
from channels.layers import get_channel_layer
from django.conf import settings

from . import snapshots
from .layers import LAYER_ERRORS

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # seconds between checks of the layer: the delay of a recovery


class GroupKeeper:
    """Re-add the sockets of one event loop to the group whenever the layer may have lost them."""

    def __init__(self):
        self.members = weakref.WeakSet()
        self.layer = get_channel_layer()
        self.renew_interval = getattr(self.layer, "group_expiry", 86400) / 4
        self.task: asyncio.Task | None = None

    async def join(self, consumer) -> None:
        """Add ``consumer`` to the group now and keep it there until ``leave``."""
        self.members.add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.keep())
        try:
            await self.layer.group_add(snapshots.GROUP, consumer.channel_name)
        except LAYER_ERRORS as exc:
            logger.warning("Could not join the users group yet; the keeper will: %s", exc)

    async def leave(self, consumer) -> None:
        self.members.discard(consumer)
        with suppress(*LAYER_ERRORS):
            await self.layer.group_discard(snapshots.GROUP, consumer.channel_name)

    async def keep(self) -> None:
        """Check the layer every CHECK_INTERVAL while this loop has sockets."""
        client = redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
        known = await self.identity_or_none(client)
        renewed_at = time.monotonic()
        try:
            while self.members:
                await asyncio.sleep(CHECK_INTERVAL)
                identity = await self.identity_or_none(client)
                if identity is None:
                    if known is not None:
                        logger.warning("The channel layer is unreachable; sockets wait for it")
                    known = None
                    continue
                lost = identity != known
                if lost or time.monotonic() - renewed_at > self.renew_interval:
                    if lost:
                        logger.warning("Layer back: rejoining %d sockets", len(self.members))
                    try:
                        await self.rejoin_all(resend_list=lost)
                    except Exception:
                        logger.exception("Rejoining the users group failed; retrying")
                    else:
                        known, renewed_at = identity, time.monotonic()
        finally:
            if client is not None:
                await client.aclose()

    @staticmethod
    async def identity_or_none(client) -> str | None:
        """
        Return what changes when the layer loses its groups, or None while it is down.

        For Redis that is the server's run id, new after every restart.
        """
        if client is None:
            return "in-memory"
        try:
            return (await client.info("server"))["run_id"]
        except LAYER_ERRORS:
            return None

    async def rejoin_all(self, *, resend_list: bool) -> None:
        """Add every socket again; with ``resend_list``, also offer each the current list."""
        for consumer in list(self.members):
            await self.layer.group_add(snapshots.GROUP, consumer.channel_name)
        if resend_list:
            snapshot = await snapshots.acurrent_snapshot()
            for consumer in list(self.members):
                consumer.offer(snapshot)


_keepers: dict[asyncio.AbstractEventLoop, GroupKeeper] = {}


def keeper() -> GroupKeeper:
    """Return the keeper of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _keepers:
        for stale in [other for other in _keepers if other.is_closed()]:
            del _keepers[stale]
        _keepers[loop] = GroupKeeper()
    return _keepers[loop]
