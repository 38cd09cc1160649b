"""LiveUsers following a live query: a searched, ordered window of the list."""

import asyncio

import pytest
from frames import EPOCH, changes, query_ack, snapshot, user
from scripted_server import live_users, within
from usersite_client import CommandError, InvalidQueryError, LiveUsers

ADA, BEA, CAL = user(4, "Ada"), user(9, "bea"), user(2, "Cal")


async def next_users(lists):
    return await within(anext(lists))


async def next_snapshot(updates):
    """Skip the updates of the window being left; return the first snapshot."""
    while not (update := await within(anext(updates))).snapshot:
        pass
    return update


async def test_the_query_is_in_the_url_with_its_defaults_left_out(server):
    async with live_users(server, search="a b", order="name", limit=20):
        session = await server.session()

    assert session.query == {"search": ["a b"], "order": ["name"], "limit": ["20"]}


async def test_it_yields_the_window_in_the_querys_order_with_the_total(server):
    async with live_users(server, search="a", order="-name", limit=3) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(30, ADA, BEA, CAL, total=7))
        first = await next_users(lists)
        renamed_to_the_top = user(4, "Zoe")
        await session.send(changes(30, 31, upserted=[renamed_to_the_top], deleted=["9"], total=6))
        second = await next_users(lists)

    assert (list(first), first.total) == (["2", "9", "4"], 7)
    assert (list(second), second.total) == (["4", "2"], 6)


async def test_after_a_dropped_connection_it_resumes_the_window_with_the_same_query(server):
    async with live_users(server, search="ada", order="-id", limit=5, offset=10) as live:
        lists = aiter(live)
        first = await server.session()
        await first.send(snapshot(30, ADA, total=11))
        await next_users(lists)
        first.drop()
        second = await server.session()
        await second.send(changes(30, 32, upserted=[user(12, "Adam")], total=12))
        resumed = await next_users(lists)

    query = {"search": ["ada"], "order": ["-id"], "limit": ["5"], "offset": ["10"]}
    assert first.query == query
    assert second.query == {**query, "epoch": [EPOCH], "version": ["30"]}
    assert (list(resumed), resumed.total) == (["12", "4"], 12)


async def test_query_sends_the_action_and_returns_on_its_ack_then_the_snapshot_is_the_new_window(
    server,
):
    async with live_users(server, search="a", limit=2) as live:
        updates = live.updates()
        session = await server.session()
        await session.send(snapshot(30, ADA, CAL, total=3))
        await within(anext(updates))
        querying = asyncio.create_task(live.query(order="name", limit=3))
        command = await session.receive()
        await session.send(query_ack(command))
        await within(querying)
        # Changes of the window being left may still come before the new snapshot.
        await session.send(changes(30, 31, upserted=[user(1, "Abe")], total=4))
        await session.send(snapshot(31, CAL, ADA, BEA, total=9))
        new_window = await next_snapshot(updates)
        await session.send(changes(31, 32, upserted=[user(1, "Abe")], deleted=["2"], total=10))
        changed = await within(anext(updates))

    assert command == {
        "action": "query",
        "search": "",
        "order": "name",
        "limit": 3,
        "offset": 0,
        "request_id": command["request_id"],
    }
    assert len(command["request_id"]) == 32
    assert (list(new_window.users), new_window.users.total) == (["4", "9", "2"], 9)
    assert (list(changed.users), changed.users.total) == (["1", "4", "9"], 10)


async def test_a_query_refused_by_the_server_raises_and_the_window_stays(server):
    async with live_users(server, order="name", limit=2) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(30, ADA, CAL, total=3))
        await next_users(lists)
        querying = asyncio.create_task(live.query(search="ada"))
        command = await session.receive()
        refusal = {"code": "invalid_query", "message": "search: not today."}
        await session.send({"type": "error", **refusal, "request_id": command["request_id"]})
        with pytest.raises(InvalidQueryError, match="search: not today"):
            await within(querying)
        await session.send(changes(30, 31, upserted=[user(1, "Abe")], deleted=["2"], total=3))
        after = await next_users(lists)

    assert list(after) == ["1", "4"], "still the first query's window, in its order"


async def test_an_invalid_query_raises_before_anything_is_sent(server):
    async with live_users(server) as live:
        with pytest.raises(InvalidQueryError, match="order"):
            await within(live.query(order="email"))
        creating = asyncio.create_task(live.create(name="Ann"))
        session = await server.session()
        first_sent = await session.receive()
        creating.cancel()

    assert first_sent["action"] == "create"


def test_an_invalid_query_raises_when_the_live_users_is_made(server):
    with pytest.raises(InvalidQueryError, match="limit"):
        LiveUsers(server.url(), limit=501)


def test_query_parameters_belong_in_the_arguments_not_in_the_url(server):
    with pytest.raises(InvalidQueryError, match="limit, order as LiveUsers' arguments"):
        LiveUsers(server.url("?order=name&limit=5&tenant=a"))


async def test_a_query_the_server_refuses_on_connecting_ends_iterating(server):
    async with live_users(server, search="ada") as live:
        session = await server.session()
        refusal = {"type": "error", "code": "invalid_query", "message": "search: too odd."}
        await session.send(refusal)
        with pytest.raises(InvalidQueryError, match="too odd"):
            await within(anext(aiter(live)))
        with pytest.raises(InvalidQueryError):
            await within(live.create(name="Ann"))


async def test_after_a_query_change_a_reconnection_resumes_the_new_window(server):
    async with live_users(server, limit=2) as live:
        updates = live.updates()
        first = await server.session()
        await first.send(snapshot(30, ADA, CAL, total=3))
        await within(anext(updates))
        querying = asyncio.create_task(live.query(search="bea", order="-name", limit=5))
        await first.send(query_ack(await first.receive()))
        await within(querying)
        await first.send(snapshot(31, BEA, total=1))
        await next_snapshot(updates)
        first.drop()
        second = await server.session()

    assert second.query == {
        "search": ["bea"],
        "order": ["-name"],
        "limit": ["5"],
        "epoch": [EPOCH],
        "version": ["31"],
    }


async def test_a_connection_lost_between_the_ack_and_the_snapshot_starts_the_new_window_over(
    server,
):
    async with live_users(server, search="a", limit=2) as live:
        updates = live.updates()
        first = await server.session()
        await first.send(snapshot(30, ADA, CAL, total=3))
        await within(anext(updates))
        querying = asyncio.create_task(live.query(order="-id", limit=2))
        await first.send(query_ack(await first.receive()))
        await within(querying)
        first.drop()
        second = await server.session()
        await second.send(snapshot(30, ADA, BEA, total=12))
        new_window = await next_snapshot(updates)

    assert second.query == {"order": ["-id"], "limit": ["2"]}, "no resume: it held the old window"
    assert list(new_window.users) == ["9", "4"]


async def test_after_two_acks_the_snapshot_is_the_newest_querys_window(server):
    async with live_users(server) as live:
        updates = live.updates()
        session = await server.session()
        await session.send(snapshot(30, ADA, BEA, CAL, total=3))
        await within(anext(updates))
        by_name = asyncio.create_task(live.query(order="name"))
        by_name_command = await session.receive()
        by_id_down = asyncio.create_task(live.query(order="-id"))
        by_id_down_command = await session.receive()
        await session.send(query_ack(by_name_command))
        await session.send(query_ack(by_id_down_command))
        await within(asyncio.gather(by_name, by_id_down))
        # The server sends one snapshot for both: the window of the query it follows.
        await session.send(snapshot(30, ADA, BEA, CAL, total=3))
        window = await next_snapshot(updates)
        await session.send(changes(30, 31, upserted=[user(12, "Abe")], total=4))
        changed = await within(anext(updates))

    assert list(window.users) == ["9", "4", "2"]
    assert list(changed.users) == ["12", "9", "4", "2"]


async def test_a_query_cancelled_after_it_was_sent_still_moves_the_window(server):
    async with live_users(server) as live:
        updates = live.updates()
        session = await server.session()
        await session.send(snapshot(30, ADA, BEA, CAL, total=3))
        await within(anext(updates))
        querying = asyncio.create_task(live.query(order="-name"))
        command = await session.receive()
        querying.cancel()
        await session.send(query_ack(command))
        await session.send(snapshot(30, ADA, BEA, CAL, total=3))
        moved = await next_snapshot(updates)

    assert list(moved.users) == ["2", "9", "4"]


async def test_a_rate_limited_query_is_sent_again_with_its_request_id(server):
    async with live_users(server) as live:
        live.rate_limit_wait = 0.01
        querying = asyncio.create_task(live.query(search="ada"))
        session = await server.session()
        command = await session.receive()
        await session.send(
            {"type": "error", "code": "rate_limited", "message": "Wait.", **_id(command)}
        )
        sent_again = await session.receive()
        await session.send(query_ack(sent_again))
        await within(querying)

    assert sent_again == command


async def test_other_errors_of_a_query_raise_command_error(server):
    async with live_users(server) as live:
        querying = asyncio.create_task(live.query(search="ada"))
        session = await server.session()
        command = await session.receive()
        await session.send({"type": "error", "code": "forbidden", "message": "No.", **_id(command)})
        with pytest.raises(CommandError) as raised:
            await within(querying)

    assert raised.value.code == "forbidden"


def _id(command: dict) -> dict:
    return {"request_id": command["request_id"]}
