"""
The live list's delivery: announce each commit, bring this process's sockets up to date.

A change to users is counted in the writer's transaction (users.models); after
the commit, ``publish`` sends the new version to the channel layer's ``users``
group. One Relay per server process is that group's member for all the
process's sockets: when it hears of a version its sockets do not hold, it reads
the list once (users.snapshots) and gives each socket the frame that brings it
there, encoded once per protocol and per version the sockets hold (a socket
that follows a live query gets what changed in its window, users.windows). The layer
carries one small message per process and change, whatever the size of the
list or the number of sockets.

The relay keeps that membership whole: its tasks are supervised (a task that
fails is logged and restarted), it rejoins the group and catches up whenever
the layer may have lost what was sent to it (an outage, a Redis restart, which
forgets every membership), renews the membership before the layer's group
expiry, and checks once a second that no committed version went unheard. It
also notices a database that went back to an older version (a restore from a
backup without ``manage.py newepoch``) and starts a new epoch (users.restores).
"""

import asyncio
import contextvars
import functools
import logging
import time
import weakref
from contextlib import suppress

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from usersite import redis_servers

from . import metrics, restores, snapshots, windows
from .outages import DATABASE_UNREACHABLE, Outage

GROUP = "users"
CHANGED_EVENT = "users.changed"

# Errors of a Redis that is down or restarting (the layer's, and the cache's).
LAYER_ERRORS = (RedisError, OSError)

CHECK_INTERVAL = 1.0  # seconds between the relay's checks: the delay of a catch-up
OUTAGE_RETRY_INTERVAL = 0.1  # seconds between attempts to reach a layer that is down
FAILURE_RETRY_FIRST, FAILURE_RETRY_MAX = 0.1, 10.0  # backoff after any other failure

logger = logging.getLogger(__name__)

# A Redis outage fails every publish until it ends: logged once (users.outages).
PUBLISHING = Outage(
    logger,
    "Could not publish the users list; the relays catch up once the channel layer is back",
    "Publishing the users list works again",
)


def record_change(sender, *, epoch: str, version: int, **kwargs) -> None:
    """
    Announce ``version`` of ``epoch`` after the writer's transaction commits.

    Connected to users_changed, which every change to users sends in the
    transaction where it took its version (users.models.change_users).
    """
    # robust: whatever goes wrong in publishing, the committed write stands.
    transaction.on_commit(functools.partial(publish, epoch, version), robust=True)


def publish(epoch: str, version: int) -> None:
    """
    Announce a committed version.

    In a server process whose sockets started a relay, hand it to the relay
    and return at once. A management command or a shell has no such loop: it
    publishes from its own thread.
    """
    metrics.publish_clock.committed()
    current = _relay
    if current is not None and current.loop.is_running():
        current.announce_threadsafe(epoch, version)
    else:
        async_to_sync(publish_now)(epoch, version)


acurrent_version = restores.acurrent_version


async def publish_now(epoch: str, version: int) -> None:
    """Send a committed version to the group; log a failure."""
    committed_at = metrics.publish_clock.take()
    try:
        await send_to_group(epoch, version)
    except LAYER_ERRORS as exc:
        PUBLISHING.failed(exc)
        metrics.PUBLISH_FAILURES.inc()
    except Exception:
        # The relays' catch-up finds the version once the cause is gone.
        logger.exception("Could not publish the users list")
        metrics.PUBLISH_FAILURES.inc()
    else:
        PUBLISHING.worked()
        metrics.publish_clock.published(committed_at)
        logger.debug("Published users list version %s", version)


async def send_to_group(epoch: str, version: int) -> None:
    event = {"type": CHANGED_EVENT, "epoch": epoch, "version": version}
    layer = get_channel_layer()
    try:
        await layer.group_send(GROUP, event)
    except RedisConnectionError:
        # A Redis restart leaves the pool's idle connections dead, and the
        # first command on one fails; redis-py drops it, so this connects anew.
        await layer.group_send(GROUP, event)


def stop_if_cancelled() -> None:
    """
    Raise CancelledError in a relay task that was asked to stop but runs on.

    redis-py's asyncio client can swallow a cancellation that arrives during a
    command, and return the command's result or report it as a failure
    (redis/redis-py#2028, #2551; redis 8.1 here: 150 of 400 INFO calls cancelled
    at once returned). A task that runs on keeps its loop from closing: tests
    hung at their end.
    """
    if asyncio.current_task().cancelling():
        raise asyncio.CancelledError


class SingleFlight:
    """
    Run ``job`` on request: at most one run in flight and one pending.

    A request while idle runs at once. The requests that arrive while a run is
    under way share the next one, which starts after they asked, so none is
    left out and a burst costs as many runs as fit in its time. The publisher
    and the relay's refresh are both run this way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, job):
        self.loop, self.job = loop, job
        self.pending = False
        self.running: asyncio.Task | None = None

    def request(self) -> None:
        self.pending = True
        if self.running is None:
            self.running = self.loop.create_task(self.run(), context=contextvars.Context())

    async def run(self) -> None:
        try:
            while self.pending:
                self.pending = False
                await self.job()
        finally:
            self.running = None


class Relay:
    """Hear of new versions for this process and bring its sockets up to date."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.publisher = SingleFlight(loop, self.publish_announced)
        self.announced: tuple[str, int] | None = None  # the newest version to publish
        self.refresher = SingleFlight(loop, self.refresh)
        self.sockets = weakref.WeakSet()
        self.live = windows.LiveQueries()
        self.layer = get_channel_layer()
        self.renew_interval = getattr(self.layer, "group_expiry", 86400) / 4
        self.channel: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.joined_once = asyncio.Event()
        self.known_epoch, self.known_version = "", 0  # the newest version heard of
        self.committed_at_last_check: tuple[str, int] | None = None
        self.database = Outage(
            logger,
            "The relay cannot reach the database; sockets wait until it is back",
            "The relay reaches the database again",
        )

    async def add(self, socket) -> None:
        """
        Bring ``socket`` up to date now and after every change, once the relay
        has tried to join.
        """
        self.sockets.add(socket)
        if not self.tasks:
            # Started by the first socket, the relay runs as long as the loop.
            # A context of its own, not that socket's.
            self.tasks = [
                self.loop.create_task(self.supervise(job), context=contextvars.Context())
                for job in (self.listen, self.watch)
            ]
        await self.joined_once.wait()
        self.refresher.request()

    def discard(self, socket) -> None:
        """Stop sending to ``socket``."""
        self.sockets.discard(socket)

    def announce_threadsafe(self, epoch: str, version: int) -> None:
        """Announce a version committed by a writer of this process, from its thread."""
        # A context of its own: the writer's holds its request's executor,
        # which Django shuts when the response is sent.
        self.loop.call_soon_threadsafe(self.announce, epoch, version, context=contextvars.Context())

    def announce(self, epoch: str, version: int) -> None:
        """Publish a committed version to the group; this process's sockets hear it at once."""
        held = self.announced
        if held is None or held[0] != epoch or held[1] < version:
            self.announced = (epoch, version)
        self.publisher.request()
        self.hear(epoch, version)

    async def publish_announced(self) -> None:
        await publish_now(*self.announced)

    def hear(self, epoch: str, version: int) -> None:
        """Learn that ``version`` of ``epoch`` is committed; bring the sockets there if new."""
        if epoch != self.known_epoch:
            # Versions of another epoch say nothing of what the sockets hold:
            # every socket gets the whole list.
            self.known_epoch = epoch
            for socket in self.sockets:
                socket.version = -1
        elif version <= self.known_version:
            return
        self.known_version = version
        self.refresher.request()

    async def committed(self, client=None) -> tuple[str, int]:
        """
        Return the committed version, starting a new epoch first if it is older
        than one heard of before (the database went back: users.restores).

        With ``client``, also record the newest version heard of in Redis and
        compare with the newest any process recorded.
        """
        known = (self.known_epoch, self.known_version)
        if client is not None and known[0]:
            with suppress(*LAYER_ERRORS):  # Redis down: this process's own knowledge
                known = (known[0], await restores.record(client, *known))
            stop_if_cancelled()
        committed = await acurrent_version()
        self.database.worked()
        if restores.went_back(known, committed):
            await restores.start_new_epoch(known, committed)
            committed = await acurrent_version()
            self.hear(*committed)
        return committed

    async def record(self) -> None:
        """
        Record the newest version heard of in Redis, for a process started after
        a restore (users.restores): at shutdown, after the checks' last.
        """
        if not settings.REDIS_URL or not self.known_epoch:
            return
        client = redis_servers.client()
        try:
            with suppress(*LAYER_ERRORS):
                await restores.record(client, self.known_epoch, self.known_version)
        finally:
            await client.aclose()

    def stale_sockets(self) -> list:
        return [socket for socket in self.sockets if socket.version < self.known_version]

    async def refresh(self) -> None:
        """
        Read the list once and offer each stale socket the frame that brings it up to date.

        One read for all of them: every user if a v1 socket or a v2 socket
        without a usable version needs the whole list, else the changes since
        the oldest version a v2 socket holds; in the same moment, the windows
        of live queries (users.windows). Sockets that hold the same version
        (of the same query) share one encoded frame.
        """
        stale = self.stale_sockets()
        if not stale:
            return
        started = time.perf_counter()
        whole = [socket for socket in stale if socket.query is None]
        resumes = {socket.holds for socket in whole if socket.protocol == 2}
        everyone = any(socket.protocol == 1 for socket in whole)
        queries = {socket.query for socket in stale if socket.query is not None}
        live = self.live
        queries |= live.current.keys()
        from_elsewhere = {
            (socket.query, socket.holds)
            for socket in stale
            if socket.query is not None
            and socket.holds[1] is not None
            and socket.holds[1] not in live.held.get(socket.query, {})
        }
        try:
            reading = await database_sync_to_async(snapshots.read)(
                everyone=everyone,
                resumes=resumes,
                also=functools.partial(live.advance, queries=queries, resumes=from_elsewhere),
            )
        except DATABASE_UNREACHABLE as exc:
            self.database.failed(exc)  # the next check tries again
            return
        except Exception:
            logger.exception("Could not read the users list; the next check tries again")
            return
        self.database.worked()
        self.hear(reading.head.epoch, reading.head.version)
        frames = {}
        for socket in self.stale_sockets():
            if socket.query is not None:
                self.offer_window(socket, reading.also, frames)
                continue
            if socket.protocol == 1:
                frame = reading.v1 if reading.everyone else None
            else:
                # What a socket holds may have moved on while the list was read.
                holds = socket.holds
                if holds not in frames:
                    frames[holds] = reading.frame_for(*holds)
                frame = frames[holds]
            if frame is not None:
                socket.offer(frame)
        if live.current:  # without live queries, no walk over every socket
            live.keep(self.sockets)
        metrics.FANOUT_DURATION.observe(time.perf_counter() - started)

    def offer_window(self, socket, resumed: dict, frames: dict) -> None:
        """Offer a socket of a live query what changed in its window, if anything did."""
        window = self.live.current.get(socket.query)
        if window is None:
            return  # a query asked for while the list was read: the next refresh reads it
        key = (socket.query, socket.holds)
        if key not in frames:
            frame = self.live.frame_for(*key)
            frames[key] = resumed.get(key, window.snapshot) if frame is False else frame
        frame = frames[key]
        if frame is None and socket.version < 0:
            # A client that resumes gets a first frame, if an empty one.
            frame = window.changes(socket.holds[1], [], [])
        if frame is None:
            socket.version = window.version  # nothing it shows changed: it is up to date
        else:
            socket.offer(frame)

    async def supervise(self, job) -> None:
        """Run ``job`` for the life of the loop, restarting it whenever it fails."""
        delay = FAILURE_RETRY_FIRST
        while True:
            started = self.loop.time()
            try:
                await job()
            except Exception as exc:
                stop_if_cancelled()  # a cancellation that redis-py reported as a failure
                if isinstance(exc, DATABASE_UNREACHABLE):
                    self.database.failed(exc)  # an outage, logged once; try again soon
                if isinstance(exc, LAYER_ERRORS + DATABASE_UNREACHABLE):
                    # An outage, reported once (watch() for the layer); try again soon.
                    logger.debug("The relay's %s waits for an outage: %s", job.__name__, exc)
                    await asyncio.sleep(OUTAGE_RETRY_INTERVAL)
                    continue
                if self.loop.time() - started > FAILURE_RETRY_MAX:
                    delay = FAILURE_RETRY_FIRST  # it had run well for a while: start over
                logger.exception("The relay's %s failed; restarting in %.1f s", job.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, FAILURE_RETRY_MAX)

    async def listen(self) -> None:
        """Join the group and catch up, then hear every version the group carries."""
        if self.channel is None:
            self.channel = await self.layer.new_channel()
        try:
            await self.rejoin()
        finally:
            self.joined_once.set()  # sockets wait for the first attempt only
        try:
            while True:
                stop_if_cancelled()
                event = await self.layer.receive(self.channel)
                self.hear(event["epoch"], event["version"])
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
        Join the group and catch up with the committed version.

        At the first join, and after a failure or a restart of the layer, what
        was published before may not have reached this relay.
        """
        if self.joined_once.is_set():
            metrics.RELAY_REJOINS.inc()
        await self.layer.group_add(GROUP, self.channel)
        if settings.REDIS_URL and not self.known_epoch:
            # The first join: notice a database restored while this process
            # was not running before any socket is sent a version of it.
            await self.check_with_redis()
        self.hear(*await self.committed())

    async def check_with_redis(self) -> None:
        """Start a new epoch if the database went back from a version another process heard of."""
        client = redis_servers.client()
        try:
            await restores.check_with_redis(client)
        finally:
            await client.aclose()
        stop_if_cancelled()

    async def watch(self) -> None:
        """
        Every CHECK_INTERVAL: drop stalled sockets, catch up (and notice a
        database that went back), rejoin a layer that restarted, renew the
        membership.
        """
        await self.joined_once.wait()  # listen() has made the channel to rejoin with
        client = redis_servers.client() if settings.REDIS_URL else None
        try:
            known = await self.identity(client)
            renewed_at = time.monotonic()
            while True:
                stop_if_cancelled()
                await asyncio.sleep(CHECK_INTERVAL)
                self.drop_stalled_sockets()
                await self.catch_up(client)
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
                metrics.SLOW_CLIENTS_DROPPED.inc()
                socket.end()

    async def catch_up(self, client=None) -> None:
        """
        Catch up with a version committed a whole check ago but never heard of,
        and retry sockets that a failed refresh left behind; notice a database
        that went back (``committed``, with Redis' ``client`` if given).

        A version can go missing without the layer going down: a publish that
        failed (logged by the publisher), a message dropped over the layer's
        capacity. One small query per process and second bounds how long a
        client can stay behind.
        """
        committed = self.committed_at_last_check
        if committed is not None and (
            committed[0] != self.known_epoch or committed[1] > self.known_version
        ):
            logger.warning("A published version went missing; catching up")
            metrics.RELAY_CATCH_UPS.labels(reason="missed_version").inc()
            self.hear(*committed)
        elif self.refresher.running is None and self.stale_sockets():
            metrics.RELAY_CATCH_UPS.labels(reason="stale_sockets").inc()
            self.refresher.request()
        self.committed_at_last_check = await self.committed(client)

    @staticmethod
    async def identity(client) -> str | None:
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


_relay: Relay | None = None


async def shutdown() -> None:
    """
    Record the newest version heard of and leave the group, at the server's
    shutdown (the ASGI lifespan's, users.housekeeping).

    uvicorn ends on SIGTERM by raising the signal again once it has served, so
    no task of the loop runs after that. A member left behind is sent every
    change until the group expiry (a day by default).
    """
    if _relay is not None and _relay.channel is not None:
        await _relay.record()
        await _relay.leave()


def relay() -> Relay:
    """Return the relay of the running event loop: a server process runs one loop."""
    global _relay
    loop = asyncio.get_running_loop()
    if _relay is None or _relay.loop is not loop:
        _relay = Relay(loop)
    return _relay
