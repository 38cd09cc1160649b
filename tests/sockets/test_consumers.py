import asyncio
import gc
import json

import pytest
from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.helpers import amake_account, next_frame_brings_a_new_user, receive_list, wire
from users import services
from users.live.publisher import send_to_group
from users.live.relay import Relay
from users.live.restores import acurrent_version
from users.models import User
from users.sockets.consumers import UserListConsumer
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def test_connect_sends_the_current_list_as_a_bare_array_ordered_by_id(connect):
    ann = await database_sync_to_async(services.user_create)(name="Ann", email="a@example.org")
    bob = await database_sync_to_async(services.user_create)(name="Bob")
    socket = await connect()
    assert await receive_list(socket) == [wire(ann), wire(bob)]
    await next_frame_brings_a_new_user(socket)


async def test_add_user_command_creates_a_user_and_every_client_gets_the_list(connect):
    sender, other = await connect(), await connect()
    assert await receive_list(sender) == await receive_list(other) == []
    await sender.send_to(text_data="__addUser__")
    received = [await receive_list(sender), await receive_list(other)]
    user = await User.objects.aget()
    assert user.name == "User 1"
    assert received == [[wire(user)], [wire(user)]]


async def test_create_action_creates_that_user_for_every_client(connect):
    sender, other = await connect(), await connect()
    await receive_list(sender), await receive_list(other)
    await sender.send_json_to({"action": "create", "name": " Ann ", "email": "ann@example.org"})
    received = [await receive_list(sender), await receive_list(other)]
    ann = await User.objects.aget()
    assert received == [[wire(ann)], [wire(ann)]]
    assert (ann.name, ann.email) == ("Ann", "ann@example.org")


BAD_FRAMES = {
    "binary": ({"bytes": b"\x00\x01"}, "unsupported_frame"),
    "empty text": ({"text": ""}, "invalid_json"),
    "not json": ({"text": "hello"}, "invalid_json"),
    "deeply nested json": ({"text": "[" * 30_000 + "]" * 30_000}, "invalid_json"),
    "json array": ({"text": "[1, 2]"}, "unknown_action"),
    "json string": ({"text": '"__addUser__"'}, "unknown_action"),
    "unknown action": ({"text": '{"action": "drop"}'}, "unknown_action"),
    "no name": ({"text": '{"action": "create"}'}, "invalid"),
    "blank name": ({"text": '{"action": "create", "name": "  "}'}, "invalid"),
    "long name": ({"text": json.dumps({"action": "create", "name": "x" * 151})}, "invalid"),
    "bad email": ({"text": '{"action": "create", "name": "A", "email": "x@"}'}, "invalid"),
    "null email": ({"text": '{"action": "create", "name": "A", "email": null}'}, "invalid"),
    "object name": ({"text": '{"action": "create", "name": {"a": 1}}'}, "invalid"),
    "NUL in name": ({"text": '{"action": "create", "name": "A\\u0000B"}'}, "invalid"),
    "lone surrogate": ({"text": '{"action": "create", "name": "A\\ud800"}'}, "invalid"),
    "too large": ({"text": json.dumps({"action": "create", "name": "x" * 70_000})}, "too_large"),
}


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_bad_frame_gets_an_error_writes_nothing_and_the_socket_stays_usable(
    connect, frame, code
):
    socket = await connect()
    await receive_list(socket)
    await socket.send_input({"type": "websocket.receive", **frame})
    error = await socket.receive_json_from(timeout=3)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"]
    assert not await User.objects.aexists()
    await socket.send_to(text_data="__addUser__")
    assert len(await receive_list(socket)) == 1


async def next_error(socket) -> dict:
    """Skip list frames; return the next error frame."""
    while isinstance(frame := json.loads(await socket.receive_from(timeout=3)), list):
        pass
    return frame


async def test_creates_over_the_rate_limit_get_an_error_and_the_socket_stays_usable(
    connect, settings
):
    settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST = 0.5, 3
    socket = await connect()
    await receive_list(socket)
    for _ in range(5):
        await socket.send_to(text_data="__addUser__")
    # The burst of 3 goes through; creates 4 and 5 are refused.
    assert [(await next_error(socket))["code"] for _ in range(2)] == ["rate_limited"] * 2
    assert await User.objects.acount() == 3
    await socket.send_json_to({"action": "drop"})  # the limit is on creates only
    assert (await next_error(socket))["code"] == "unknown_action"


async def test_field_errors_name_the_field_and_reach_only_the_sender(connect):
    await database_sync_to_async(services.user_create)(name="Ann", email="ann@example.org")
    sender, other = await connect(), await connect()
    await receive_list(sender), await receive_list(other)
    await sender.send_json_to({"action": "create", "name": "A2", "email": "ANN@example.org"})
    error = await sender.receive_json_from(timeout=3)
    assert error["errors"] == {"email": ["A user with this email already exists."]}
    assert await User.objects.acount() == 1
    await next_frame_brings_a_new_user(other)


async def test_a_version_the_socket_holds_or_an_older_one_sends_nothing(connect):
    socket = await connect()
    await receive_list(socket)
    epoch, version = await acurrent_version()
    await send_to_group(epoch, version)
    await send_to_group(epoch, version - 1)
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    assert await receive_list(socket) == [wire(ann)]


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://localhost:8000", True),
        (b"http://127.0.0.1", True),
        (b"http://evil.example", False),
        (b"null", False),
    ],
)
async def test_a_browser_origin_must_be_an_allowed_host(origin, accepted):
    socket = WebsocketCommunicator(application, SOCKET_PATH, headers=[(b"origin", origin)])
    connected, _ = await socket.connect()
    assert connected is accepted
    await socket.disconnect()


async def test_a_handshake_without_origin_is_accepted_for_native_clients(connect):
    assert await receive_list(await connect()) == []


async def session_cookie_for(account) -> tuple[bytes, bytes]:
    client = Client()
    await sync_to_async(client.force_login)(account)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.mark.parametrize(("perms", "allowed"), [((), False), (("add_user",), True)])
async def test_without_anonymous_writes_socket_creates_need_the_add_permission(
    connect, settings, perms, allowed
):
    settings.USERS_ANONYMOUS_WRITES = False
    account = await amake_account(perms=perms)
    socket = await connect(headers=[await session_cookie_for(account)])
    await receive_list(socket)
    await socket.send_to(text_data="__addUser__")
    if allowed:
        assert len(await receive_list(socket)) == 1
    else:
        assert (await socket.receive_json_from(timeout=3))["code"] == "forbidden"
        assert not await User.objects.aexists()


async def test_without_anonymous_writes_an_anonymous_socket_may_read_but_not_create(
    connect, settings
):
    settings.USERS_ANONYMOUS_WRITES = False
    socket = await connect()
    assert await receive_list(socket) == []
    await socket.send_json_to({"action": "create", "name": "Ann"})
    assert (await socket.receive_json_from(timeout=3))["code"] == "forbidden"
    assert not await User.objects.aexists()


async def test_without_anonymous_reads_a_session_without_permissions_reads(connect, settings):
    settings.USERS_ANONYMOUS_READS = False
    socket = await connect(headers=[await session_cookie_for(await amake_account())])
    assert await receive_list(socket) == []


def recording_sends(app, events: list):
    """Wrap an ASGI app so that ``events`` records the type of each message it sends."""

    async def wrapped(scope, receive, send):
        async def recorded(message):
            events.append(message["type"])
            await send(message)

        return await app(scope, receive, recorded)

    return wrapped


async def test_a_socket_is_accepted_then_registered_then_sent_its_list(monkeypatch):
    events = []
    add = Relay.add

    async def recorded_add(relay, socket):
        events.append("registered")
        await add(relay, socket)

    monkeypatch.setattr(Relay, "add", recorded_add)
    socket = WebsocketCommunicator(recording_sends(application, events), SOCKET_PATH)
    await socket.connect()
    await receive_list(socket)
    await socket.disconnect()
    assert events == ["websocket.accept", "registered", "websocket.send"]


async def test_a_send_that_fails_is_logged_once_and_ends_only_that_socket(connect, caplog):
    def failing_sends(app):
        async def wrapped(scope, receive, send):
            async def fail_lists(message):
                if message["type"] == "websocket.send":
                    raise RuntimeError("the server could not send this")
                await send(message)

            return await app(scope, receive, fail_lists)

        return wrapped

    other = await connect()
    await receive_list(other)
    failing = WebsocketCommunicator(failing_sends(application), SOCKET_PATH)
    assert (await failing.connect())[0]
    await asyncio.wait_for(failing.future, 3)  # the consumer ended, without an exception
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    assert await receive_list(other) == [wire(ann)]
    gc.collect()  # a task that died unseen would report it now
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["Could not send the users list; closing that socket"]


async def test_the_consumer_sets_up_what_channels_own_dispatch_loop_does_but_a_channel(settings):
    """
    UserListConsumer replaces AsyncConsumer.__call__ (it saves 4 KB per idle socket).

    This fails when a channels release sets up something new there, for the
    replacement to follow; channels is pinned in requirements.txt.
    """
    # channels' own loop would make a channel in Redis, and leave its blocking read behind.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def disconnect_at_once():
        return {"type": "websocket.disconnect", "code": 1000}

    async def ignore(message):
        pass

    scope = {"type": "websocket", "path": SOCKET_PATH}
    channels_own, ours = UserListConsumer(), UserListConsumer()
    await AsyncConsumer.__call__(channels_own, scope, disconnect_at_once, ignore)
    await ours(scope, disconnect_at_once, ignore)
    assert set(vars(channels_own)) - set(vars(ours)) == {"channel_name", "channel_receive"}
    assert set(vars(ours)) <= set(vars(channels_own))
