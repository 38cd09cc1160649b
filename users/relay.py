"""
The live list's delivery: publish after each commit, relay to this process's sockets.

A change to users is counted in the writer's transaction (``record_change``);
after the commit, ``publish`` asks this server process's Publisher, which reads
the snapshot once and sends it to the channel layer's ``users`` group. One
Relay per server process is that group's member for all the process's sockets
and offers each snapshot to them with a plain method call, so the layer carries
one message per process and change, whatever the number of sockets.

The relay keeps that membership whole: its tasks are supervised (a task that
fails is logged and restarted), it rejoins the group and offers the current
list whenever the layer may have lost what was sent to it (an outage, a Redis
restart, which forgets every membership), renews the membership before the
layer's group expiry, and checks once a second that no committed version went
unoffered.
"""

import asyncio
import contextvars
import logging
import threading
import time
import weakref
from contextlib import suppress

import redis.asyncio as redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from . import snapshots

GROUP = "users"
SNAPSHOT_EVENT = "users.snapshot"

# Errors of a Redis that is down or restarting (the layer's, and the cache's).
LAYER_ERRORS = (RedisError, OSError)

CHECK_INTERVAL = 1.0  # seconds between the relay's checks: the delay of a catch-up
OUTAGE_RETRY_INTERVAL = 0.1  # seconds between attempts to reach a layer that is down
FAILURE_RETRY_FIRST, FAILURE_RETRY_MAX = 0.1, 10.0  # backoff after any other failure

logger = logging.getLogger(__name__)

# Per writer thread: whether it made changes that no publish has covered yet.
_unpublished = threading.local()


def record_change(sender, **kwargs) -> None:
    """
    Count a change to users in the writer's transaction; publish after it commits.

    Connected to the User model's post_save, post_delete and users_changed.
    """
    snapshots.bump_version()
    _unpublished.changes = True
    # robust: whatever goes wrong in publishing, the committed write stands.
    transaction.on_commit(publish, robust=True)


def publish() -> None:
    """
    Publish the current list, after a commit.

    In a server process whose sockets started a relay, ask its publisher and
    return at once. A management command or a shell has no such loop: it
    publishes from its own thread.
    """
    # A transaction of many changes (a bulk delete sends post_delete per row)
    # registers a publish for each: the first to run covers them all.
    if not getattr(_unpublished, "changes", False):
        return
    _unpublished.changes = False
    current = _relay
    if current is not None and current.loop.is_running():
        current.publisher.request_threadsafe()
    else:
        async_to_sync(publish_now)()


async def publish_now() -> None:
    """Read the current snapshot and send it to the group; log a failure."""
    try:
        snapshot = await snapshots.acurrent_snapshot()
        await send_to_group(snapshot)
    except Exception:
        # The relays' catch-up resends the list once the cause is gone.
        logger.exception("Could not publish the users list")
    else:
        logger.debug("Published users list version %s", snapshot.version)


async def send_to_group(snapshot: snapshots.Snapshot) -> None:
    event = {"type": SNAPSHOT_EVENT, "version": snapshot.version, "text": snapshot.text}
    layer = get_channel_layer()
    try:
        await layer.group_send(GROUP, event)
    except RedisConnectionError:
        # A Redis restart leaves the pool's idle connections dead, and the
        # first command on one fails; redis-py drops it, so this connects anew.
        await layer.group_send(GROUP, event)


class Publisher:
    """
    Publish for a server process: at most one publish in flight and one pending.

    A change while idle is published at once. The changes that commit while a
    publish runs share the next one, whose read starts after they asked, so
    none is left out and a burst costs as many publishes as fit in its time.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending = False
        self.running: asyncio.Task | None = None

    def request_threadsafe(self) -> None:
        """Ask for a publish from a writer's thread, without waiting for it."""
        # A context of its own: the writer's holds its request's executor,
        # which Django shuts when the response is sent.
        self.loop.call_soon_threadsafe(self.request, context=contextvars.Context())

    def request(self) -> None:
        self.pending = True
        if self.running is None:
            self.running = self.loop.create_task(self.run())

    async def run(self) -> None:
        try:
            while self.pending:
                self.pending = False
                await publish_now()
        finally:
            self.running = None


class Relay:
    """Receive the group's snapshots for this process and offer them to its sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.publisher = Publisher(loop)
        self.sockets = weakref.WeakSet()
        self.layer = get_channel_layer()
        self.renew_interval = getattr(self.layer, "group_expiry", 86400) / 4
        self.channel: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.joined_once = asyncio.Event()
        self.offered_version = 0
        self.committed_at_last_check = 0

    async def add(self, socket) -> None:
        """Offer snapshots to ``socket`` from now on, once the relay has tried to join."""
        self.sockets.add(socket)
        if not self.tasks:
            # Started by the first socket, the relay runs as long as the loop.
            # A context of its own, not that socket's.
            self.tasks = [
                self.loop.create_task(self.supervise(job), context=contextvars.Context())
                for job in (self.listen, self.watch)
            ]
        await self.joined_once.wait()

    def discard(self, socket) -> None:
        """Stop offering snapshots to ``socket``."""
        self.sockets.discard(socket)

    def offer_all(self, snapshot: snapshots.Snapshot) -> None:
        self.offered_version = max(self.offered_version, snapshot.version)
        for socket in list(self.sockets):
            socket.offer(snapshot)

    async def supervise(self, job) -> None:
        """Run ``job`` for the life of the loop, restarting it whenever it fails."""
        delay = FAILURE_RETRY_FIRST
        while True:
            started = self.loop.time()
            try:
                await job()
            except Exception as exc:
                # redis-py can report the cancellation of a blocking read as a
                # TimeoutError; a relay whose loop is closing must stop.
                if asyncio.current_task().cancelling():
                    raise asyncio.CancelledError from exc
                if isinstance(exc, LAYER_ERRORS):
                    # An outage: watch() reports it once; try again soon, quietly.
                    logger.debug("The relay's %s waits for the layer: %s", job.__name__, exc)
                    await asyncio.sleep(OUTAGE_RETRY_INTERVAL)
                    continue
                if self.loop.time() - started > FAILURE_RETRY_MAX:
                    delay = FAILURE_RETRY_FIRST  # it had run well for a while: start over
                logger.exception("The relay's %s failed; restarting in %.1f s", job.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, FAILURE_RETRY_MAX)

    async def listen(self) -> None:
        """Join the group, offer the current list, then every snapshot the group carries."""
        if self.channel is None:
            self.channel = await self.layer.new_channel()
        try:
            await self.rejoin()
        finally:
            self.joined_once.set()  # sockets wait for the first attempt only
        try:
            while True:
                event = await self.layer.receive(self.channel)
                self.offer_all(snapshots.Snapshot(event["version"], event["text"]))
        finally:
            if asyncio.current_task().cancelling():
                # The loop is closing: leave, or every publish keeps sending to
                # this process's channel until the group expiry.
                await asyncio.shield(self.leave())

    async def leave(self) -> None:
        with suppress(*LAYER_ERRORS):  # then the membership expires by itself
            await self.layer.group_discard(GROUP, self.channel)

    async def rejoin(self) -> None:
        """
        Join the group and offer the current list.

        At the first join, and after a failure or a restart of the layer, what
        was published before may not have reached this relay.
        """
        await self.layer.group_add(GROUP, self.channel)
        self.offer_all(await snapshots.acurrent_snapshot())

    async def watch(self) -> None:
        """
        Every CHECK_INTERVAL: drop stalled sockets, catch up, rejoin a layer that
        restarted, renew the membership.
        """
        await self.joined_once.wait()  # listen() has made the channel to rejoin with
        client = redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
        try:
            known = await self.identity(client)
            renewed_at = time.monotonic()
            while True:
                await asyncio.sleep(CHECK_INTERVAL)
                self.drop_stalled_sockets()
                await self.catch_up()
                identity = await self.identity(client)
                if identity is None:
                    if known is not None:
                        logger.warning("The channel layer is unreachable; sockets wait for it")
                    known = None
                elif identity != known:
                    logger.warning("The channel layer is back; rejoining the users group")
                    await self.rejoin()
                    known, renewed_at = identity, time.monotonic()
                elif time.monotonic() - renewed_at > self.renew_interval:
                    await self.layer.group_add(GROUP, self.channel)
                    renewed_at = time.monotonic()
        finally:
            if client is not None:
                await client.aclose()

    def drop_stalled_sockets(self) -> None:
        """
        End the sockets whose send has waited USERS_SLOW_CLIENT_TIMEOUT seconds for the client.

        A sweep once a check instead of a timeout around every send: the
        timeouts were a sixth of a fan-out's cost on the event loop.
        """
        timeout = settings.USERS_SLOW_CLIENT_TIMEOUT
        stalled_since = self.loop.time() - timeout
        for socket in list(self.sockets):
            if socket.sending_since is not None and socket.sending_since < stalled_since:
                logger.info("Dropping a socket that took no list for %s s", timeout)
                socket.end()

    async def catch_up(self) -> None:
        """
        Resend the list if a version committed a whole check ago was never offered.

        A snapshot can go missing without the layer going down: a publish that
        failed (logged by the publisher), a message dropped over the layer's
        capacity. One small query per process and second bounds how long a
        client can stay behind.
        """
        if self.offered_version < self.committed_at_last_check:
            logger.warning("A published list went missing; resending the current one")
            self.offer_all(await snapshots.acurrent_snapshot())
        self.committed_at_last_check = await snapshots.acurrent_version()

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


_relay: Relay | None = None


async def lifespan(scope, receive, send) -> None:
    """
    ASGI lifespan: at shutdown, leave the group.

    uvicorn ends on SIGTERM by raising the signal again once it has served, so
    no task of the loop runs after that. A member left behind is sent every
    change until the group expiry (a day by default).
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _relay is not None and _relay.channel is not None:
                await _relay.leave()
            await send({"type": "lifespan.shutdown.complete"})
            return


def relay() -> Relay:
    """Return the relay of the running event loop: a server process runs one loop."""
    global _relay
    loop = asyncio.get_running_loop()
    if _relay is None or _relay.loop is not loop:
        _relay = Relay(loop)
    return _relay
