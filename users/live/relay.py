"""
This process's live-list delivery, wired together: one relay per server process.

A committed version reaches the relay two ways: from a writer of this process
(``announce_threadsafe``, via users.live.publisher), or from the ``users``
group (users.live.member). Either way the fan-out (users.live.fanout) brings
the sockets there, and the watchdog (users.live.watchdog) catches up with
what both may have missed. The relay starts with the first socket and runs as
long as the event loop.
"""

import asyncio
import contextvars

from channels.layers import get_channel_layer

from .. import metrics
from . import publisher
from .fanout import Fanout
from .member import GroupMember
from .subscriber import Subscriber
from .supervision import supervise
from .watchdog import Watchdog


class Relay:
    """Learn of new versions for this process and bring its sockets up to date."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.fanout = Fanout(loop)
        self.publisher = publisher.CoalescingPublisher(loop)
        self.member = GroupMember(get_channel_layer(), self.fanout.learn, self.catch_up_on_join)
        self.watchdog = Watchdog(loop, self.fanout, self.member)
        self.tasks: list[asyncio.Task] = []

    async def add(self, socket: Subscriber) -> None:
        """
        Bring ``socket`` up to date now and after every change, once the relay
        has tried to join.
        """
        self.fanout.add(socket)
        if not self.tasks:
            # Started by the first socket, the relay runs as long as the loop.
            # A context of its own, not that socket's.
            self.tasks = [
                self.loop.create_task(supervise(self.loop, job), context=contextvars.Context())
                for job in (self.member.listen, self.watchdog.watch)
            ]
        await self.member.joined_once.wait()
        self.fanout.refresher.request()

    def discard(self, socket: Subscriber) -> None:
        """Stop sending to ``socket``."""
        self.fanout.discard(socket)

    def announce_threadsafe(self, epoch: str, version: int) -> None:
        """Announce a version committed by a writer of this process, from its thread."""
        # A context of its own: the writer's holds its request's executor,
        # which Django shuts when the response is sent.
        self.loop.call_soon_threadsafe(self.announce, epoch, version, context=contextvars.Context())

    def announce(self, epoch: str, version: int) -> None:
        """Publish a committed version to the group; this process's sockets learn it at once."""
        self.publisher.announce(epoch, version)
        self.fanout.learn(epoch, version)

    async def catch_up_on_join(self) -> None:
        """After each join of the group: what was published before may not have arrived."""
        await self.watchdog.after_join()


_relay: Relay | None = None


def current() -> Relay | None:
    """Return the relay that sockets started, if any did."""
    return _relay


def relay() -> Relay:
    """Return the relay of the running event loop: a server process runs one loop."""
    global _relay
    loop = asyncio.get_running_loop()
    if _relay is None or _relay.loop is not loop:
        _relay = Relay(loop)
    return _relay


def _open_socket_protocols() -> list[int]:
    return _relay.fanout.protocols() if _relay is not None else []


# Pushed rather than imported there, so neither module imports the other.
publisher.publish_through(current)
metrics.OPEN_SOCKETS.count_from(_open_socket_protocols)
