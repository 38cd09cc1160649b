"""Protocol v2 on the real ASGI application, through channels' WebsocketCommunicator."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from tests.helpers import amake_account, next_frame_brings_a_new_user, receive_list, wire
from users import services
from users.models import User, UserListVersion
from users.sockets.consumers import SHARED_UTF8
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

V2 = ["users.v2"]


async def receive_frame(socket, timeout: float = 3) -> dict:
    frame = json.loads(await socket.receive_from(timeout=timeout))
    assert isinstance(frame, dict), frame
    return frame


async def receive_type(socket, kind: str) -> dict:
    """Skip frames of other types (an ack and its change set come in either order)."""
    while (frame := await receive_frame(socket))["type"] != kind:
        pass
    return frame


@pytest.fixture
def connect_v2(connect):
    async def open_v2(query: str = "", headers=()):
        return await connect(f"{SOCKET_PATH}{query}", headers=headers, subprotocols=V2)

    return open_v2


async def head() -> tuple[str, int]:
    row = await UserListVersion.objects.aget()
    return row.epoch, row.number


async def test_v2_is_selected_by_its_subprotocol_and_starts_with_a_snapshot(connect):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    socket = WebsocketCommunicator(application, SOCKET_PATH, subprotocols=["users.v1", *V2])
    assert await socket.connect() == (True, "users.v2")
    epoch, version = await head()
    assert await receive_frame(socket) == {
        "type": "snapshot",
        "epoch": epoch,
        "version": version,
        "users": [wire(ann)],
    }
    await socket.disconnect()


async def test_a_write_is_acked_to_its_sender_and_sent_as_changes_beside_v1(connect, connect_v2):
    writer, reader, v1 = await connect_v2(), await connect_v2(), await connect()
    snapshot = await receive_frame(writer)
    await receive_frame(reader), await receive_list(v1)
    await writer.send_json_to({"action": "create", "name": "Ann", "request_id": "r1"})
    ack = await receive_type(writer, "ack")
    ann = await User.objects.aget()
    assert ack == {"type": "ack", "request_id": "r1", "user": wire(ann), "version": ann.version}
    changes = await receive_type(reader, "changes")
    assert changes == {
        "type": "changes",
        "epoch": snapshot["epoch"],
        "from": snapshot["version"],
        "version": snapshot["version"] + 1,
        "upserted": [wire(ann)],
        "deleted": [],
    }
    assert await receive_list(v1) == [wire(ann)]
    await next_frame_brings_a_new_user(reader)


async def test_update_and_delete_are_acked_and_each_change_set_starts_where_the_last_ended(
    connect_v2,
):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    socket = await connect_v2()
    held = (await receive_frame(socket))["version"]
    await socket.send_json_to({"action": "update", "id": str(ann.pk), "email": "a@example.org"})
    await socket.send_json_to({"action": "delete", "id": str(ann.pk), "request_id": "d"})
    acks, upserted, deleted = [], [], []
    while len(acks) < 2 or not deleted:
        frame = await receive_frame(socket)
        if frame["type"] == "ack":
            acks.append(frame)
        else:
            assert frame["from"] == held
            held = frame["version"]
            upserted += frame["upserted"]
            deleted += frame["deleted"]
    updated_at, deleted_at = held - 1, held  # the versions of the update and the delete
    assert acks[0] == {
        "type": "ack",
        "request_id": None,
        "user": {**wire(ann), "email": "a@example.org"},
        "version": updated_at,
    }
    assert acks[1] == {
        "type": "ack",
        "request_id": "d",
        "deleted": str(ann.pk),
        "version": deleted_at,
    }
    assert deleted == [str(ann.pk)]
    assert not await User.objects.aexists()


async def test_a_client_resumes_with_the_changes_since_its_version(connect_v2):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    ann_id = str(ann.pk)
    epoch, version = await head()
    bob = await database_sync_to_async(services.user_create)(name="Bob")
    await database_sync_to_async(services.user_delete)(ann)
    socket = await connect_v2(f"?epoch={epoch}&version={version}")
    assert await receive_frame(socket) == {
        "type": "changes",
        "epoch": epoch,
        "from": version,
        "version": version + 2,
        "upserted": [wire(bob)],
        "deleted": [ann_id],
    }
    await next_frame_brings_a_new_user(socket)


async def test_a_client_that_holds_the_current_version_gets_empty_changes(connect_v2):
    await database_sync_to_async(services.user_create)(name="Ann")
    epoch, version = await head()
    socket = await connect_v2(f"?epoch={epoch}&version={version}")
    frame = await receive_frame(socket)
    assert (frame["type"], frame["from"], frame["upserted"], frame["deleted"]) == (
        "changes",
        version,
        [],
        [],
    )


@pytest.mark.parametrize(
    "query",
    ["?epoch=another&version=1", "?epoch={epoch}&version=99"],
    ids=["another epoch", "a version from the future"],
)
async def test_a_version_that_cannot_be_resumed_gets_the_snapshot(connect_v2, query):
    epoch, _ = await head()
    socket = await connect_v2(query.format(epoch=epoch))
    assert (await receive_frame(socket))["type"] == "snapshot"


@pytest.mark.parametrize(
    "query",
    ["?version=1", "?epoch=e&version=-1", "?epoch=e&version=1e3", "?epoch=e&version=1&version=2"],
)
async def test_bad_resume_parameters_get_an_error_then_the_snapshot(connect_v2, query):
    socket = await connect_v2(query)
    error = await receive_frame(socket)
    assert (error["type"], error["code"]) == ("error", "invalid")
    assert (await receive_frame(socket))["type"] == "snapshot"


async def token_for(perms) -> str:
    account = await amake_account(perms=perms)
    return (await Token.objects.acreate(user=account)).key


async def test_the_same_request_id_on_two_connections_of_one_account_creates_one_user(
    connect, settings
):
    settings.USERS_ANONYMOUS_WRITES = False
    key = await token_for(["add_user"])
    command = {"action": "create", "name": "Ann", "request_id": "once"}
    acks = []
    for _ in range(2):  # as after a reconnect that lost the first ack
        socket = await connect(subprotocols=[*V2, f"token.{key}"])
        await receive_frame(socket)
        await socket.send_json_to(command)
        acks.append(await receive_type(socket, "ack"))
    assert acks[0] == acks[1]
    assert await User.objects.acount() == 1


async def test_a_request_id_reused_for_another_command_is_refused(connect_v2):
    socket = await connect_v2()
    await receive_frame(socket)
    await socket.send_json_to({"action": "create", "name": "Ann", "request_id": "r"})
    ann = (await receive_type(socket, "ack"))["user"]
    await socket.send_json_to({"action": "delete", "id": ann["id"], "request_id": "r"})
    error = await receive_type(socket, "error")
    assert (error["code"], error["request_id"]) == ("request_id_reused", "r")
    assert await User.objects.acount() == 1


async def test_a_request_id_reused_with_other_fields_is_refused_and_writes_nothing(connect_v2):
    socket = await connect_v2()
    await receive_frame(socket)
    await socket.send_json_to({"action": "create", "name": "Ann", "request_id": "r"})
    await receive_type(socket, "ack")
    await socket.send_json_to({"action": "create", "name": "Bob", "request_id": "r"})
    error = await receive_type(socket, "error")
    assert (error["code"], error["request_id"]) == ("request_id_reused", "r")
    assert [user.name async for user in User.objects.all()] == ["Ann"]


BAD_COMMANDS = {
    "add user is v1's": ("__addUser__", "unknown_action"),
    "no action": ({"name": "Ann"}, "unknown_action"),
    "a json array": ([1], "unknown_action"),
    "blank name": ({"action": "create", "name": " "}, "invalid"),
    "update without id": ({"action": "update", "name": "A"}, "invalid"),
    "delete of a bad id": ({"action": "delete", "id": "1; DROP"}, "invalid"),
    "delete of an id as a number": ({"action": "delete", "id": 1}, "invalid"),
    "update of an unknown id": ({"action": "update", "id": "999", "name": "A"}, "not_found"),
    "empty request id": ({"action": "create", "name": "A", "request_id": ""}, "invalid"),
    "long request id": ({"action": "create", "name": "A", "request_id": "r" * 65}, "invalid"),
    "request id not text": ({"action": "create", "name": "A", "request_id": 5}, "invalid"),
    "request id with NUL": ({"action": "create", "name": "A", "request_id": "a\x00"}, "invalid"),
    "request id with a lone surrogate": (
        {"action": "create", "name": "A", "request_id": "a\ud800"},
        "invalid",
    ),
    "action not text": ({"action": ["create"], "name": "A"}, "unknown_action"),
    "action an object": ({"action": {"create": 1}, "name": "A"}, "unknown_action"),
}


@pytest.mark.parametrize(("command", "code"), BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
async def test_a_bad_command_gets_an_error_and_writes_nothing(connect_v2, command, code):
    await database_sync_to_async(services.user_create)(name="Kept")
    before = await head()
    socket = await connect_v2()
    await receive_frame(socket)
    await socket.send_to(text_data=command if isinstance(command, str) else json.dumps(command))
    error = await receive_frame(socket)
    assert (error["type"], error["code"]) == ("error", code)
    assert await head() == before
    await next_frame_brings_a_new_user(socket)


async def test_an_error_names_the_request_id_of_its_command(connect_v2):
    socket = await connect_v2()
    await receive_frame(socket)
    await socket.send_json_to({"action": "create", "name": "", "request_id": "mine"})
    error = await receive_frame(socket)
    assert error["request_id"] == "mine"
    assert set(error["errors"]) == {"name"}


@pytest.mark.parametrize(
    ("perms", "allowed"),
    [((), False), (("delete_user",), True)],
)
async def test_without_anonymous_writes_a_delete_needs_the_delete_permission(
    connect, settings, perms, allowed
):
    settings.USERS_ANONYMOUS_WRITES = False
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    socket = await connect(subprotocols=[*V2, f"token.{await token_for(perms)}"])
    await receive_frame(socket)
    await socket.send_json_to({"action": "delete", "id": str(ann.pk)})
    frame = await receive_type(socket, "ack" if allowed else "error")
    assert frame.get("code") == (None if allowed else "forbidden")
    assert await User.objects.aexists() is not allowed


async def test_writes_over_the_rate_limit_are_refused(connect_v2, settings):
    settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST = 0.5, 2
    socket = await connect_v2()
    await receive_frame(socket)
    for k in range(3):
        await socket.send_json_to({"action": "create", "name": f"U{k}", "request_id": f"r{k}"})
    error = await receive_type(socket, "error")
    assert (error["code"], error["request_id"]) == ("rate_limited", "r2")
    assert await User.objects.acount() == 2


async def test_an_id_with_leading_zeros_names_the_same_user_and_request(connect_v2):
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    socket = await connect_v2()
    await receive_frame(socket)
    padded = {"action": "delete", "id": f"00{ann.pk}", "request_id": "z"}
    await socket.send_json_to(padded)
    assert (await receive_type(socket, "ack"))["deleted"] == str(ann.pk)
    await socket.send_json_to({**padded, "id": str(ann.pk)})  # the same command, retried
    assert (await receive_type(socket, "ack"))["deleted"] == str(ann.pk)


async def test_only_writes_count_against_the_rate_limit(connect_v2, settings):
    settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST = 0.5, 1
    socket = await connect_v2()
    await receive_frame(socket)
    for _ in range(3):
        await socket.send_json_to({"action": "drop"})
        assert (await receive_frame(socket))["code"] == "unknown_action"
    await socket.send_json_to({"action": "create", "name": "Ann", "request_id": "a"})
    assert (await receive_type(socket, "ack"))["request_id"] == "a"


async def test_anonymous_sockets_keep_their_request_ids_apart_unless_they_name_one_client(
    connect_v2,
):
    """Two anonymous clients picking one id each write; one client retrying elsewhere does not."""
    command = {"action": "create", "name": "Ann", "request_id": "1"}
    first, second = await connect_v2(), await connect_v2()
    client = "?client=a-client-of-its-own-0001"
    again, retry = await connect_v2(client), await connect_v2(client)
    acks = []
    for socket in (first, second, again, retry):
        await receive_frame(socket)
        await socket.send_json_to(command)
        acks.append(await receive_type(socket, "ack"))
    ids = [ack["user"]["id"] for ack in acks]
    assert ids[0] != ids[1] != ids[2], "anonymous clients got each other's answer"
    assert ids[3] == ids[2], "a client's retry on another connection wrote again"
    assert await User.objects.acount() == 3


async def test_sockets_sent_the_same_list_share_one_copy_of_its_bytes():
    """Where the server takes UTF-8 bytes (usersite.websocket_protocol), all get the same."""
    await database_sync_to_async(services.user_create)(name="Zoë 山田")
    sent = []
    for extensions in [{SHARED_UTF8: {}}] * 3 + [{}]:  # one after another: a refresh each
        communicator = WebsocketCommunicator(application, SOCKET_PATH, subprotocols=V2)
        communicator.scope["extensions"] = extensions
        assert (await communicator.connect(timeout=5))[0]
        sent.append(await communicator.receive_output(timeout=3))
        await communicator.disconnect()
    *shared, plain = sent
    assert json.loads(shared[0]["text"])["type"] == "snapshot"
    assert shared[0][SHARED_UTF8] == shared[0]["text"].encode()
    assert all(message[SHARED_UTF8] is shared[0][SHARED_UTF8] for message in shared)
    assert plain == {"type": "websocket.send", "text": shared[0]["text"]}, "no extension, no bytes"
