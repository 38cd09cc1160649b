import asyncio
from http import HTTPStatus

import pytest
from frames import EPOCH, changes, snapshot, user
from scripted_server import ScriptedServer, live_users, within
from usersite_client import Backoff, HandshakeError, LiveUsers


class RecordingBackoff(Backoff):
    """A Backoff of a few milliseconds that notes how many failures each delay followed."""

    def __init__(self):
        super().__init__(0.01, 0.05)
        self.failures_seen: list[int] = []

    def next_delay(self) -> float:
        self.failures_seen.append(self.failures)
        return super().next_delay()


async def next_list(lists) -> dict:
    return dict(await within(anext(lists)))


async def test_it_offers_protocol_v2_alone_without_a_token(server):
    async with live_users(server):
        session = await server.session()

    assert session.offered == ["users.v2"]


async def test_it_offers_the_token_beside_protocol_v2(server):
    async with live_users(server, token="f00d"):
        session = await server.session()

    assert session.offered == ["users.v2", "token.f00d"]


async def test_it_yields_the_list_after_the_snapshot_and_after_each_change(server):
    async with live_users(server) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(12, user(10), user(2)))
        first = await next_list(lists)
        await session.send(changes(12, 13, upserted=[user(9)], deleted=["2"]))
        second = await next_list(lists)

    assert list(first) == ["2", "10"]
    assert list(second) == ["9", "10"]
    assert second["9"] == user(9)


async def test_after_a_dropped_connection_it_resumes_keeping_the_urls_parameters(server):
    async with LiveUsers(server.url("?tenant=a"), reconnect=Backoff(0.01, 0.05)) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(12, user(1)))
        await first.send(changes(12, 13, upserted=[user(2)]))
        await next_list(lists)
        first.drop()
        second = await server.session()
        await second.send(changes(13, 14, upserted=[user(3)]))
        resumed = await next_list(lists)

    assert first.query == {"tenant": ["a"]}
    assert second.query == {"tenant": ["a"], "epoch": [EPOCH], "version": ["13"]}
    assert first.client == second.client == live.client, "its retries are known as its own"
    assert list(resumed) == ["1", "2", "3"]


async def test_after_the_server_closes_the_connection_it_resumes(server):
    async with live_users(server) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(12, user(1)))
        await next_list(lists)
        await first.socket.close(1012)  # "service restart"
        second = await server.session()

    assert second.query == {"epoch": [EPOCH], "version": ["12"]}


async def test_a_resume_with_nothing_new_yields_no_list(server):
    async with live_users(server) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(12, user(1)))
        await next_list(lists)
        first.drop()
        second = await server.session()
        await second.send(changes(12, 12))
        await second.send(changes(12, 13, upserted=[user(2)]))
        after_resume = await next_list(lists)

    assert list(after_resume) == ["1", "2"]


async def test_changes_from_another_version_make_it_start_over_without_resuming(server):
    async with live_users(server) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(12, user(1)))
        await next_list(lists)
        await first.send(changes(11, 13, upserted=[user(666)]))
        second = await server.session()
        await second.send(snapshot(14, user(1), user(2)))
        after = await next_list(lists)

    assert second.query == {}
    assert list(after) == ["1", "2"]


async def test_it_takes_the_snapshot_of_a_new_epoch(server):
    async with live_users(server) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(12, user(1)))
        await next_list(lists)
        await session.send(snapshot(1, user(7), epoch="restored"))
        after = await next_list(lists)
        await session.send(changes(1, 2, upserted=[user(8)], epoch="restored"))
        later = await next_list(lists)

    assert list(after) == ["7"]
    assert list(later) == ["7", "8"]


async def test_it_never_yields_an_older_list(server):
    async with live_users(server) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(14, user(1), user(2)))
        await next_list(lists)
        await first.send(snapshot(10, user(1)))  # a server behind the one before
        await first.send(changes(10, 11, upserted=[user(3)]))
        second = await server.session()
        await second.send(snapshot(15, user(1), user(2), user(4)))
        after = await next_list(lists)

    assert second.query == {}
    assert list(after) == ["1", "2", "4"]


async def test_a_slow_reader_gets_the_newest_list_and_updates_gives_every_change(server):
    async with live_users(server) as live:
        lists, updates = aiter(live), live.updates()
        session = await server.session()
        await session.send(snapshot(12))
        await next_list(lists)
        await within(anext(updates))
        for version in (13, 14, 15):
            await session.send(changes(version - 1, version, upserted=[user(version)]))
        seen = [await within(anext(updates)) for _ in range(3)]
        newest = await next_list(lists)

    assert [update.upserted for update in seen] == [(user(13),), (user(14),), (user(15),)]
    assert list(newest) == ["13", "14", "15"]


async def test_an_iterator_that_starts_late_begins_with_the_current_list(server):
    async with live_users(server) as live:
        updates = live.updates()
        session = await server.session()
        await session.send(snapshot(12, user(1)))
        await within(anext(updates))
        await session.send(changes(12, 13, upserted=[user(2)]))
        await within(anext(updates))
        late = await within(anext(live.updates()))

    assert late.snapshot
    assert list(late.users) == ["1", "2"]


async def test_iterating_ends_when_the_live_users_closes(server):
    async with live_users(server) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(12, user(1)))
        await next_list(lists)
        reader = asyncio.create_task(anext(lists, "ended"))
        await asyncio.sleep(0.05)
        assert not reader.done()

    assert await within(reader) == "ended"


async def test_a_snapshot_over_a_mebibyte_is_taken(server):
    many = [user(n, "x" * 100) for n in range(1, 10_001)]
    async with live_users(server) as live:
        session = await server.session()
        await session.send(snapshot(12, *many))
        users = await next_list(aiter(live))

    assert len(users) == 10_000


@pytest.mark.parametrize("status", [HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND])
async def test_a_refused_handshake_ends_iterating_with_handshake_error(status):
    async with ScriptedServer(refusals=(status,)) as server, live_users(server) as live:
        with pytest.raises(HandshakeError, match=str(status.value)):
            await within(anext(aiter(live)))


async def test_a_server_that_does_not_speak_v2_ends_iterating_with_handshake_error():
    async with ScriptedServer(subprotocols=()) as server, live_users(server) as live:
        with pytest.raises(HandshakeError, match="does not speak"):
            await within(anext(aiter(live)))


async def test_it_connects_again_with_backoff_after_refusals_worth_retrying():
    refusals = (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS)
    backoff = RecordingBackoff()
    async with (
        ScriptedServer(refusals=refusals) as server,
        LiveUsers(server.url(), reconnect=backoff) as live,
    ):
        session = await server.session()
        await session.send(snapshot(12, user(1)))
        users = await next_list(aiter(live))

    assert list(users) == ["1"]
    assert backoff.failures_seen == [0, 1]


async def test_the_backoff_starts_over_once_a_connection_delivers_the_list():
    backoff = RecordingBackoff()
    async with (
        ScriptedServer(refusals=(HTTPStatus.SERVICE_UNAVAILABLE,) * 2) as server,
        LiveUsers(server.url(), reconnect=backoff) as live,
    ):
        first = await server.session()
        await first.send(snapshot(12, user(1)))
        await next_list(aiter(live))
        first.drop()
        await server.session()

    assert backoff.failures_seen == [0, 1, 0]
