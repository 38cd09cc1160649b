"""Who a socket's handshake authenticates as: an app's token, a session, or nobody."""

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from tests.helpers import amake_account, receive_list
from users.models import User
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def token_for(perms=(), username="app") -> str:
    account = await amake_account(username, perms=perms)
    return (await Token.objects.acreate(user=account)).key


async def open_with_token(key: str) -> tuple[WebsocketCommunicator, bool, object]:
    socket = WebsocketCommunicator(
        application, SOCKET_PATH, subprotocols=["users.v1", f"token.{key}"]
    )
    connected, subprotocol_or_code = await socket.connect()
    return socket, connected, subprotocol_or_code


@pytest.mark.parametrize(("perms", "allowed"), [((), False), (("add_user",), True)])
async def test_a_token_on_the_socket_writes_with_its_accounts_permissions(settings, perms, allowed):
    settings.USERS_ANONYMOUS_WRITES = False
    socket, connected, subprotocol = await open_with_token(await token_for(perms))
    assert (connected, subprotocol) == (True, "users.v1")
    await receive_list(socket)
    await socket.send_json_to({"action": "create", "name": "By app"})
    if allowed:
        assert [user["name"] for user in await receive_list(socket)] == ["By app"]
    else:
        assert (await socket.receive_json_from(timeout=3))["code"] == "forbidden"
        assert not await User.objects.aexists()
    await socket.disconnect()


async def test_an_unknown_or_revoked_token_is_refused_at_the_handshake():
    key = await token_for(("add_user",))
    await Token.objects.filter(key=key).adelete()
    socket, connected, _ = await open_with_token(key)
    assert not connected
    await socket.disconnect()


async def test_an_inactive_accounts_token_is_refused():
    key = await token_for(("add_user",))
    token = await Token.objects.select_related("user").aget(key=key)
    token.user.is_active = False
    await token.user.asave()
    _, connected, _ = await open_with_token(key)
    assert not connected


async def test_without_anonymous_reads_an_anonymous_handshake_is_refused(settings):
    settings.USERS_ANONYMOUS_READS = False
    socket = WebsocketCommunicator(application, SOCKET_PATH)
    connected, _ = await socket.connect()
    assert not connected
    await socket.disconnect()


async def test_without_anonymous_reads_a_token_without_permissions_reads(settings):
    settings.USERS_ANONYMOUS_READS = False
    socket, connected, _ = await open_with_token(await token_for())
    assert connected
    assert await receive_list(socket) == []
    await socket.disconnect()
