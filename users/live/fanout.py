"""
Bring this process's sockets to the newest committed version: one read, each frame encoded once.

The relay tells the fan-out of every committed version it learns of. When
sockets are behind, the fan-out reads the list once (users.live.snapshots)
and offers each socket the frame that brings it there; sockets that hold the
same version (of the same live query, users.live.windows) share one frame.
"""

import asyncio
import functools
import logging
import time
import weakref

from channels.db import database_sync_to_async

from .. import metrics
from ..outages import DATABASE_UNREACHABLE
from . import snapshots, windows
from .coalescing import CoalescingRunner
from .subscriber import Subscriber
from .supervision import DATABASE_OUTAGE

logger = logging.getLogger(__name__)


class Fanout:
    """This process's sockets and the newest version committed that they should reach."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.sockets: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self.live = windows.LiveQueries()
        self.known_epoch, self.known_version = "", 0  # the newest version learnt of
        # Which sockets the next refresh looks at: every one after a new
        # version, else only those added since and those a refresh left behind.
        # A connect then costs its own socket, not a walk over every socket:
        # in a reconnect storm that walk made N connects cost N * N / 2 steps.
        self.everyone_due = False
        self.due: set[Subscriber] = set()
        # One refresh in flight: the versions learnt meanwhile share the next.
        self.refresher = CoalescingRunner(loop, self.refresh)

    def learn(self, epoch: str, version: int) -> None:
        """Learn that ``version`` of ``epoch`` is committed; bring the sockets there if new."""
        if epoch != self.known_epoch:
            # Versions of another epoch say nothing of what the sockets hold:
            # every socket gets the whole list.
            self.known_epoch = epoch
            for socket in self.sockets:
                socket.needs_whole_list()
        elif version <= self.known_version:
            return
        self.known_version = version
        self.everyone_due = True
        self.refresher.request()

    def add(self, socket: Subscriber) -> None:
        """Bring ``socket`` up to date at the next refresh, and with every version after."""
        self.sockets.add(socket)
        self.due.add(socket)

    def discard(self, socket: Subscriber) -> None:
        self.sockets.discard(socket)
        self.due.discard(socket)

    def protocols(self) -> list[int]:
        """The protocol of each socket (for users.metrics)."""
        return [socket.protocol for socket in list(self.sockets)]

    def stale_sockets(self) -> list[Subscriber]:
        """The sockets behind the newest version learnt of, among those due."""
        due = self.sockets if self.everyone_due else self.due
        return [socket for socket in due if socket.version < self.known_version]

    def settle(self, offered: list[Subscriber]) -> None:
        """After the offers: only the sockets still behind stay due."""
        self.everyone_due = False
        self.due = {socket for socket in offered if socket.version < self.known_version}

    async def refresh(self) -> None:
        """
        Read the list once and offer each stale socket the frame that brings it up to date.

        One read for all of them: every user if a v1 socket or a v2 socket
        without a usable version needs the whole list, else the changes since
        the oldest version a v2 socket holds; in the same moment, the windows
        of live queries.
        """
        stale = self.stale_sockets()
        if not stale or self.offer_kept_frames(stale):
            self.settle(stale)
            return
        started = time.perf_counter()
        whole = [socket for socket in stale if socket.query is None]
        resumes = {socket.list_at for socket in whole if socket.protocol == 2}
        everyone = any(socket.protocol == 1 for socket in whole)
        queries = {socket.query for socket in stale if socket.query is not None}
        live = self.live
        queries |= live.current.keys()
        from_elsewhere = {
            (socket.query, socket.list_at)
            for socket in stale
            if socket.query is not None
            and socket.list_at[1] is not None
            and socket.list_at[1] not in live.held.get(socket.query, {})
        }
        try:
            list_read = await database_sync_to_async(snapshots.read)(
                everyone=everyone,
                resumes=resumes,
                also=functools.partial(live.advance, queries=queries, resumes=from_elsewhere),
            )
        except DATABASE_UNREACHABLE as exc:
            DATABASE_OUTAGE.failed(exc)  # the next check tries again
            return
        except Exception:
            logger.exception("Could not read the users list; the next check tries again")
            return
        DATABASE_OUTAGE.worked()
        self.learn(list_read.head.epoch, list_read.head.version)
        frames = {}
        swept_everyone = self.everyone_due
        stale = self.stale_sockets()
        for socket in stale:
            if socket.query is not None:
                self.offer_window(socket, list_read.also, frames)
                continue
            if socket.protocol == 1:
                frame = list_read.v1 if list_read.everyone else None
            else:
                # What a socket holds may have moved on while the list was read.
                list_at = socket.list_at
                if list_at not in frames:
                    frames[list_at] = list_read.frame_for(*list_at)
                frame = frames[list_at]
            if frame is not None:
                socket.offer(frame)
        self.settle(stale)
        if live.current and swept_everyone:  # forgetting windows can wait for a new version
            live.keep(self.sockets)
        metrics.FANOUT_DURATION.observe(time.perf_counter() - started)

    def offer_kept_frames(self, stale: list[Subscriber]) -> bool:
        """
        Offer each stale socket a frame kept from an earlier read of the newest
        version learnt of (users.live.snapshots.NewestFrames), if every one has
        one: in a reconnect storm, sockets that hold a version already served
        cost no read. False, offering nothing, when a read is needed.
        """
        kept = snapshots.newest_frames.at(self.known_epoch, self.known_version)
        if kept is None or self.live.current:
            return False
        frames = []
        for socket in stale:
            kind = "list" if socket.protocol == 1 else ("for", *socket.list_at)
            if socket.query is not None or kind not in kept:
                return False
            frames.append(kept[kind])
        for socket, frame in zip(stale, frames, strict=True):
            socket.offer(frame)
        return True

    def offer_window(self, socket: Subscriber, resumed: dict, frames: dict) -> None:
        """Offer a socket of a live query what changed in its window, if anything did."""
        window = self.live.current.get(socket.query)
        if window is None:
            return  # a query asked for while the list was read: the next refresh reads it
        key = (socket.query, socket.list_at)
        if key not in frames:
            frame = self.live.frame_for(*key)
            frames[key] = resumed.get(key, window.snapshot) if frame is False else frame
        frame = frames[key]
        if frame is None and socket.version < 0:
            # A client that resumes gets a first frame, if an empty one.
            frame = window.changes(socket.list_at[1], [], [])
        if frame is None:
            socket.up_to_date_at(window.version)  # nothing it shows changed
        else:
            socket.offer(frame)
