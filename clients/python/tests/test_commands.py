import asyncio
import re
from http import HTTPStatus

import pytest
from frames import EPOCH, changes, snapshot, user
from scripted_server import ScriptedServer, live_users, within
from usersite_client import CommandError, HandshakeError

REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def ack(command: dict, **answer) -> dict:
    return {"type": "ack", "request_id": command["request_id"], **answer}


def error(command: dict, code: str, **more) -> dict:
    return {"type": "error", "code": code, "message": f"Said {code}.", **more} | (
        {"request_id": command["request_id"]} if command else {}
    )


async def test_create_sends_the_command_with_a_random_request_id_and_returns_the_user(server):
    async with live_users(server) as live:
        creating = asyncio.create_task(live.create(name="Grace", email="grace@example.org"))
        session = await server.session()
        command = await session.receive()
        await session.send(ack(command, user=user(2, "Grace", "grace@example.org")))
        created = await within(creating)
        creating_another = asyncio.create_task(live.create(name="Ann"))
        another = await session.receive()
        await session.send(ack(another, user=user(3, "Ann")))
        await within(creating_another)

    assert created == user(2, "Grace", "grace@example.org")
    assert command == {
        "action": "create",
        "name": "Grace",
        "email": "grace@example.org",
        "request_id": ANY_ID,
    }
    assert another["request_id"] != command["request_id"]


async def test_update_sends_only_the_fields_given_and_returns_the_user(server):
    async with live_users(server) as live:
        session_task = asyncio.create_task(server.session())
        updating = asyncio.create_task(live.update(7, name="Ada"))
        session = await within(session_task)
        command = await session.receive()
        await session.send(ack(command, user=user(7, "Ada")))
        updated = await within(updating)

    assert command == {"action": "update", "id": "7", "name": "Ada", "request_id": ANY_ID}
    assert updated == user(7, "Ada")


async def test_delete_returns_the_deleted_id(server):
    async with live_users(server) as live:
        deleting = asyncio.create_task(live.delete("7"))
        session = await server.session()
        command = await session.receive()
        await session.send(ack(command, deleted="7"))
        deleted = await within(deleting)

    assert command == {"action": "delete", "id": "7", "request_id": ANY_ID}
    assert deleted == "7"


@pytest.mark.parametrize("ack_first", [True, False])
async def test_the_ack_may_come_before_or_after_the_changes_it_made(server, ack_first):
    async with live_users(server) as live:
        lists = aiter(live)
        session = await server.session()
        await session.send(snapshot(12, user(1)))
        await within(anext(lists))
        creating = asyncio.create_task(live.create(name="Grace"))
        command = await session.receive()
        frames = [ack(command, user=user(2, "Grace")), changes(12, 13, upserted=[user(2, "Grace")])]
        for frame in frames if ack_first else reversed(frames):
            await session.send(frame)
        created = await within(creating)
        users = await within(anext(lists))

    assert created == user(2, "Grace")
    assert list(users) == ["1", "2"]


async def test_a_command_unanswered_when_the_connection_drops_is_sent_again_with_its_request_id(
    server,
):
    async with live_users(server) as live:
        first = await server.session()
        await first.send(snapshot(12))
        creating = asyncio.create_task(live.create(name="Grace"))
        sent = await first.receive()
        first.drop()
        second = await server.session()
        sent_again = await second.receive()
        await second.send(ack(sent_again, user=user(2, "Grace")))
        created = await within(creating)

    assert sent_again == sent
    assert second.query == {"epoch": [EPOCH], "version": ["12"]}
    assert created == user(2, "Grace")


async def test_an_error_frame_for_the_command_raises_command_error(server):
    errors = {"email": ["Enter a valid email address."]}
    async with live_users(server) as live:
        creating = asyncio.create_task(live.create(name="Grace", email="nope"))
        session = await server.session()
        command = await session.receive()
        await session.send(error(command, "invalid", errors=errors))
        with pytest.raises(CommandError) as raised:
            await within(creating)

    assert (raised.value.code, raised.value.message, raised.value.errors) == (
        "invalid",
        "Said invalid.",
        errors,
    )


async def test_an_error_for_no_command_of_its_own_does_not_answer_a_command(server):
    async with live_users(server) as live:
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        command = await session.receive()
        await session.send(error({}, "invalid"))
        await session.send({**error(command, "forbidden"), "request_id": "someone else's"})
        await session.send(ack(command, user=user(2, "Grace")))

        assert await within(creating) == user(2, "Grace")


async def test_a_rate_limited_command_is_sent_again_after_a_wait_with_its_request_id(server):
    async with live_users(server) as live:
        live.rate_limit_wait = 0.01
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        command = await session.receive()
        await session.send(error(command, "rate_limited"))
        sent_again = await session.receive()
        await session.send(ack(sent_again, user=user(2, "Grace")))

        assert await within(creating) == user(2, "Grace")
    assert sent_again == command


@pytest.mark.parametrize("code", ["unavailable", "outcome_unknown"])
async def test_a_command_the_database_failed_is_sent_again_with_its_request_id(server, code):
    async with live_users(server) as live:
        live.rate_limit_wait = 0.01
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        command = await session.receive()
        await session.send(error(command, code))
        sent_again = await session.receive()
        await session.send(error(sent_again, code))
        sent_once_more = await session.receive()
        await session.send(ack(sent_once_more, user=user(2, "Grace")))

        assert await within(creating) == user(2, "Grace")
    assert sent_again == sent_once_more == command


@pytest.mark.parametrize(
    ("code", "retries"),
    [("rate_limited", "rate_limit_retries"), ("unavailable", "unavailable_retries")],
)
async def test_a_command_still_refused_after_its_retries_raises(server, code, retries):
    async with live_users(server) as live:
        live.rate_limit_wait = 0.01
        setattr(live, retries, 2)
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        for _ in range(3):
            await session.send(error(await session.receive(), code))
        with pytest.raises(CommandError) as raised:
            await within(creating)

    assert raised.value.code == code


async def test_other_errors_are_not_sent_again(server):
    async with live_users(server) as live:
        live.rate_limit_wait = 0.01
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        await session.send(error(await session.receive(), "server_error"))
        with pytest.raises(CommandError) as raised:
            await within(creating)

    assert raised.value.code == "server_error"


async def test_a_command_over_the_servers_frame_cap_is_refused_without_sending_it(server):
    async with live_users(server) as live:
        with pytest.raises(CommandError) as raised:
            await within(live.create(name="x" * 65_536))
        creating = asyncio.create_task(live.create(name="Grace"))
        session = await server.session()
        first_sent = await session.receive()
        await session.send(ack(first_sent, user=user(2, "Grace")))
        await within(creating)

    assert raised.value.code == "too_large"
    assert first_sent["name"] == "Grace"


async def test_a_refused_handshake_raises_handshake_error_in_commands():
    async with (
        ScriptedServer(refusals=(HTTPStatus.FORBIDDEN,)) as server,
        live_users(server, token="revoked") as live,
    ):
        with pytest.raises(HandshakeError):
            await within(live.create(name="Grace"))
        with pytest.raises(HandshakeError):
            await within(live.delete(1))


async def test_commands_need_an_open_live_users(server):
    live = live_users(server)
    with pytest.raises(RuntimeError, match="async with"):
        await within(live.create(name="Grace"))
    async with live:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await within(live.create(name="Grace"))


async def test_a_command_waiting_when_the_live_users_closes_raises(server):
    async with live_users(server) as live:
        creating = asyncio.create_task(live.create(name="Grace"))
        await (await server.session()).receive()

    with pytest.raises(RuntimeError, match="closed"):
        await within(creating)


class AnyRequestId:
    def __eq__(self, other):
        return isinstance(other, str) and REQUEST_ID.fullmatch(other) is not None


ANY_ID = AnyRequestId()
