"""
The live list's one listener per server process.

Were every socket to join the users group, the channel layer would carry one
membership, one receive loop and one delivery per socket and change. Instead a
relay per process (per event loop) joins the group once and hands each
snapshot to its local sockets with a plain method call, so the layer carries
one message per process and change, whatever the number of sockets.

The relay also keeps that membership: it renews it well before the layer's
``group_expiry``, and when Redis answers again after an outage or a restart
(which wipes every membership) it rejoins and hands every socket the current
list from the database, since what was published meanwhile is lost.
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


class SnapshotRelay:
    """Receive the group's snapshots for this event loop and offer them to its sockets."""

    def __init__(self):
        self.sockets = weakref.WeakSet()
        self.layer = get_channel_layer()
        self.renew_interval = getattr(self.layer, "group_expiry", 86400) / 4
        self.channel: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.joined_once = asyncio.Event()
        self.offered_version = 0
        self.committed_at_last_check = 0

    async def add(self, socket) -> None:
        """Offer snapshots to ``socket`` from now on; return once the relay is in the group."""
        self.sockets.add(socket)
        if not self.tasks:
            # Started by the loop's first socket, the relay runs as long as the loop.
            # Set before any await, so that sockets connecting meanwhile share it.
            self.tasks = [asyncio.create_task(self.listen()), asyncio.create_task(self.watch())]
            snapshots.publish_from_this_loop()
        await self.joined_once.wait()

    def discard(self, socket) -> None:
        """Stop offering snapshots to ``socket``."""
        self.sockets.discard(socket)

    def offer_all(self, snapshot: snapshots.Snapshot) -> None:
        self.offered_version = max(self.offered_version, snapshot.version)
        for socket in list(self.sockets):
            socket.offer(snapshot)

    async def listen(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.join()
        # Sockets read their first list after this join; a version committed
        # before it needs no broadcast.
        try:
            self.offered_version = max(self.offered_version, await snapshots.acurrent_version())
        except Exception:
            logger.exception("Could not read the list's version")
        try:
            while True:
                event = await self.layer.receive(self.channel)
                if event["type"] == snapshots.SNAPSHOT_EVENT:
                    self.offer_all(snapshots.Snapshot.from_event(event))
        finally:
            # The loop is closing: leave rather than wait for the membership to expire.
            await asyncio.shield(self.leave())

    async def join(self) -> bool:
        try:
            await self.layer.group_add(snapshots.GROUP, self.channel)
        except LAYER_ERRORS as exc:
            logger.warning("Could not join the users group; retrying: %s", exc)
            return False
        else:
            return True
        finally:
            self.joined_once.set()

    async def leave(self) -> None:
        with suppress(*LAYER_ERRORS):  # otherwise the membership expires by itself
            await self.layer.group_discard(snapshots.GROUP, self.channel)

    async def watch(self) -> None:
        """Every CHECK_INTERVAL: rejoin if the layer may have lost the membership."""
        await self.joined_once.wait()  # listen() has made the channel to rejoin with
        client = redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
        try:
            known = await self.identity(client)
            renewed_at = time.monotonic()
            while True:
                await asyncio.sleep(CHECK_INTERVAL)
                await self.catch_up()
                identity = await self.identity(client)
                if identity is None:
                    if known is not None:
                        logger.warning("The channel layer is unreachable; sockets wait for it")
                    known = None
                elif identity != known:
                    logger.warning("The channel layer is back; rejoining and resending the list")
                    if await self.join() and await self.resend_current_list():
                        known, renewed_at = identity, time.monotonic()
                elif time.monotonic() - renewed_at > self.renew_interval and await self.join():
                    renewed_at = time.monotonic()
        finally:
            if client is not None:
                await client.aclose()

    async def catch_up(self) -> None:
        """
        Resend the list if a version committed a whole check ago was never offered.

        A snapshot can go missing without the layer going down: a publish that
        failed (a database or Redis error, logged by the writer), a message
        dropped over the layer's capacity. One small query per process and
        second bounds how long a client can stay behind.
        """
        if self.offered_version < self.committed_at_last_check:
            logger.warning("A published list went missing; resending the current one")
            await self.resend_current_list()
        try:
            self.committed_at_last_check = await snapshots.acurrent_version()
        except Exception:
            logger.exception("Could not read the list's version")

    async def resend_current_list(self) -> bool:
        try:
            self.offer_all(await snapshots.acurrent_snapshot())
        except Exception:
            logger.exception("Could not read the list to resend it; retrying")
            return False
        return True

    @staticmethod
    async def identity(client) -> str | None:
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


_relays: dict[asyncio.AbstractEventLoop, SnapshotRelay] = {}


def relay() -> SnapshotRelay:
    """Return the relay of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _relays:
        for closed in [other for other in _relays if other.is_closed()]:
            del _relays[closed]
        _relays[loop] = SnapshotRelay()
    return _relays[loop]
