"""
This process's one member of the channel layer's ``users`` group, for all its sockets.

The layer carries one small message per process and change, whatever the
number of sockets: the member hands each version it hears to the relay.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

from .. import metrics
from .publisher import GROUP
from .supervision import LAYER_ERRORS, stop_if_cancelled

logger = logging.getLogger(__name__)


class GroupMember:
    """Join the group, hand on every version it carries, leave at shutdown."""

    def __init__(
        self,
        layer,
        on_version: Callable[[str, int], None],
        on_join: Callable[[], Awaitable[None]],
    ):
        self.layer = layer
        self.on_version, self.on_join = on_version, on_join
        # Renewed well before the layer forgets the membership.
        self.renew_interval = getattr(layer, "group_expiry", 86400) / 4
        self.channel: str | None = None
        self.joined_once = asyncio.Event()  # set after the first attempt to join

    async def listen(self) -> None:
        """Join the group and catch up, then hand on every version the group carries."""
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
                self.on_version(event["epoch"], event["version"])
        finally:
            if asyncio.current_task().cancelling():
                # The loop is closing: leave, or every publish keeps sending to
                # this process's channel until the group expiry.
                await asyncio.shield(self.leave())

    async def rejoin(self) -> None:
        """
        Join the group and catch up with the committed version (``on_join``).

        At the first join, and after a failure or a restart of the layer, what
        was published before may not have reached this member.
        """
        if self.joined_once.is_set():
            metrics.RELAY_REJOINS.inc()
        await self.layer.group_add(GROUP, self.channel)
        await self.on_join()

    async def renew(self) -> None:
        """Join again before the layer's group expiry forgets the membership."""
        await self.layer.group_add(GROUP, self.channel)

    async def leave(self) -> None:
        with suppress(*LAYER_ERRORS):  # then the membership expires by itself
            await self.layer.group_discard(GROUP, self.channel)
