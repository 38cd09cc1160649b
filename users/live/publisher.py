"""
After a commit, announce the list's new version to the channel layer's ``users`` group.

A change to users takes its version in the writer's transaction
(users.models.change_users, which sends users_changed); after the commit,
``publish`` sends that version to the group, where every server process's
relay hears it. In a server process the relay's event loop publishes, one
publish in flight at a time; a management command or a shell publishes from
its own thread.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError

from .. import metrics
from ..outages import Outage
from .coalescing import CoalescingRunner
from .supervision import LAYER_ERRORS

GROUP = "users"
CHANGED_EVENT = "users.changed"

logger = logging.getLogger(__name__)

# A Redis outage fails every publish until it ends: logged once (users.outages).
PUBLISHING = Outage(
    logger,
    "Could not publish the users list; the relays catch up once the channel layer is back",
    "Publishing the users list works again",
)


class LocalRelay(Protocol):
    """What ``publish`` needs of the relay of this process's event loop, if one runs."""

    loop: asyncio.AbstractEventLoop

    def announce_threadsafe(self, epoch: str, version: int) -> None: ...


def _no_relay() -> LocalRelay | None:
    return None


_find_local_relay: Callable[[], LocalRelay | None] = _no_relay


def publish_through(find_relay: Callable[[], LocalRelay | None]) -> None:
    """Publish this process's commits through the relay ``find_relay`` returns, if any."""
    global _find_local_relay
    _find_local_relay = find_relay


def publish_after_commit(sender, *, epoch: str, version: int, **kwargs) -> None:
    """
    Publish ``version`` of ``epoch`` after the writer's transaction commits.

    Connected to users_changed in users.apps.
    """
    # robust: whatever goes wrong in publishing, the committed write stands.
    transaction.on_commit(functools.partial(publish, epoch, version), robust=True)


def publish(epoch: str, version: int) -> None:
    """
    Announce a committed version.

    In a server process whose sockets started a relay, hand it to the relay
    and return at once; elsewhere publish from this thread.
    """
    metrics.publish_clock.committed()
    relay = _find_local_relay()
    if relay is not None and relay.loop.is_running():
        relay.announce_threadsafe(epoch, version)
    else:
        async_to_sync(publish_now)(epoch, version)


async def publish_now(epoch: str, version: int) -> None:
    """Send a committed version to the group; log a failure."""
    committed_at = metrics.publish_clock.take()
    try:
        await send_to_group(epoch, version)
    except LAYER_ERRORS as exc:
        PUBLISHING.failed(exc)
        metrics.PUBLISH_FAILURES.inc()
    except Exception:
        # The relays' watchdogs find the version once the cause is gone.
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


class CoalescingPublisher:
    """
    Publish the newest version this process committed, one publish in flight.

    Versions committed during a publish are covered by the next one, which
    announces only the newest: a burst of writes costs a few publishes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.newest: tuple[str, int] | None = None
        self.runs = CoalescingRunner(loop, self.publish_newest)

    def announce(self, epoch: str, version: int) -> None:
        """Publish ``version`` of ``epoch`` soon, unless a newer one is announced first."""
        newest = self.newest
        if newest is None or newest[0] != epoch or newest[1] < version:
            self.newest = (epoch, version)
        self.runs.request()

    async def publish_newest(self) -> None:
        await publish_now(*self.newest)
