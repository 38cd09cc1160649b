import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from users import services
from users.live import snapshots
from users.live.fanout import Fanout
from users.live.snapshots import Frame
from users.live.subscriber import Subscriber

pytestmark = pytest.mark.django_db(transaction=True)


class CountingSocket:
    """A v1 subscriber that keeps what it is offered and counts the fan-out's looks at it."""

    protocol, query, list_at, sending_since = 1, None, (None, None), None

    def __init__(self):
        self.offered: list[Frame] = []
        self.looks = 0
        self._version = -1

    @property
    def version(self) -> int:
        self.looks += 1
        return self._version

    def offer(self, frame: Frame) -> None:
        self.offered.append(frame)
        self._version = max(self._version, frame.version)

    def needs_whole_list(self) -> None:
        self._version = -1

    def up_to_date_at(self, version: int) -> None:
        self._version = version

    def end(self) -> None:
        pass


async def refreshed(fanout: Fanout) -> None:
    fanout.refresher.request()
    await fanout.refresher.running


async def test_a_socket_added_is_brought_up_to_date_without_a_look_at_the_others():
    fanout = Fanout(asyncio.get_running_loop())
    settled = [CountingSocket() for _ in range(50)]
    assert isinstance(settled[0], Subscriber)
    for socket in settled:
        fanout.add(socket)
    await refreshed(fanout)
    assert all(len(socket.offered) == 1 for socket in settled)
    looks = [socket.looks for socket in settled]

    newcomer = CountingSocket()
    fanout.add(newcomer)
    await refreshed(fanout)

    assert [frame.text for frame in newcomer.offered] == ["[]"]
    # A connect costs its own socket: in a reconnect storm a look at every
    # socket per connect made N connects cost N * N / 2 looks.
    assert [socket.looks for socket in settled] == looks


async def test_a_socket_that_a_failed_read_left_behind_gets_its_list_at_the_next_refresh(
    monkeypatch,
):
    fanout = Fanout(asyncio.get_running_loop())
    socket = CountingSocket()
    fanout.add(socket)
    read = snapshots.read

    def unreachable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(snapshots, "read", unreachable)
    await refreshed(fanout)
    assert socket.offered == []

    # What the watchdog does on its next check.
    monkeypatch.setattr(snapshots, "read", read)
    assert fanout.stale_sockets() == [socket]
    await refreshed(fanout)
    assert [frame.text for frame in socket.offered] == ["[]"]
    assert fanout.stale_sockets() == []


async def test_a_new_version_reaches_every_socket_but_one_that_left():
    fanout = Fanout(asyncio.get_running_loop())
    staying, leaving = CountingSocket(), CountingSocket()
    for socket in (staying, leaving):
        fanout.add(socket)
    await refreshed(fanout)
    fanout.discard(leaving)

    await database_sync_to_async(services.user_create)(name="Ann")
    head = (await database_sync_to_async(snapshots.read)(everyone=False)).head
    fanout.learn(head.epoch, head.version)
    await fanout.refresher.running

    assert "Ann" in staying.offered[-1].text
    assert len(leaving.offered) == 1
