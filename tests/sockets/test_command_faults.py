"""
Socket commands whose database fails under them, on a real PostgreSQL.

The failures are real: a trigger holds the write, and another connection
terminates its backend (pg_terminate_backend), before the commit or during it.
Every such command is answered with an error frame that says what became of
the write, and the socket stays open.
"""

import json
import logging

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.database_faults import Database
from tests.helpers import amake_account
from users.models import CommandReceipt, User
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates PostgreSQL backends"),
]


@pytest.fixture
def connect_v2(connect):
    async def open_v2():
        socket = await connect(SOCKET_PATH, subprotocols=["users.v2"])
        assert json.loads(await socket.receive_from())["type"] == "snapshot"
        return socket

    return open_v2


async def answer(socket, request_id: str) -> dict:
    """The ack or error frame of ``request_id`` (change sets may come before it)."""
    while True:
        frame = json.loads(await socket.receive_from(timeout=10))
        if frame.get("request_id") == request_id:
            return frame


async def test_a_connection_cut_before_the_commit_answers_unavailable_and_writes_nothing(
    database, connect_v2
):
    socket = await connect_v2()
    database.install("stall")
    create = {"action": "create", "name": "Ada", "request_id": "r1"}
    await socket.send_json_to(create)
    await database.terminate_the_stalled_writer()

    refused = await answer(socket, "r1")
    assert refused["type"] == "error"
    assert refused["code"] == "unavailable"
    assert database.names() == []
    assert database.receipts("r1") == 0

    database.remove_faults()
    await socket.send_json_to(create)  # the socket is still open: the client resends
    acked = await answer(socket, "r1")
    assert acked["type"] == "ack"
    assert database.names() == ["Ada"]


async def test_a_connection_cut_at_the_commit_answers_outcome_unknown_and_a_resend_writes_once(
    database, connect_v2
):
    socket = await connect_v2()
    database.install("cut_at_commit")
    create = {"action": "create", "name": "Ada", "request_id": "r2"}
    await socket.send_json_to(create)
    refused = await answer(socket, "r2")
    assert refused["type"] == "error"
    assert refused["code"] == "outcome_unknown"

    database.remove_faults()
    for _ in range(2):  # the resend, and a resend of that
        await socket.send_json_to(create)
        assert (await answer(socket, "r2"))["type"] == "ack"
    assert database.names() == ["Ada"]
    assert database.receipts("r2") == 1


async def test_a_v1_create_whose_connection_is_cut_answers_unavailable(database, connect):
    socket = await connect(SOCKET_PATH)
    assert json.loads(await socket.receive_from()) == []
    database.install("stall")
    await socket.send_to(text_data="__addUser__")
    await database.terminate_the_stalled_writer()
    frame = json.loads(await socket.receive_from(timeout=10))
    assert frame["type"] == "error"
    assert frame["code"] == "unavailable"
    assert database.names() == []

    database.remove_faults()
    await socket.send_to(text_data="__addUser__")
    assert len(json.loads(await socket.receive_from(timeout=10))) == 1


async def test_any_other_failure_answers_server_error_and_is_logged_once(
    database, connect_v2, caplog
):
    socket = await connect_v2()
    database.install("fail")
    with caplog.at_level(logging.ERROR, logger="users"):
        await socket.send_json_to({"action": "create", "name": "Ada", "request_id": "r3"})
        refused = await answer(socket, "r3")
    assert refused["type"] == "error"
    assert refused["code"] == "server_error"
    failures = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in failures] == ["A socket command failed"]
    assert not await User.objects.filter(name="Ada").aexists()
    assert not await CommandReceipt.objects.aexists()

    database.remove_faults()
    await socket.send_json_to({"action": "create", "name": "Ada", "request_id": "r4"})
    assert (await answer(socket, "r4"))["type"] == "ack"


async def test_a_token_the_database_cannot_check_gets_503_so_the_client_tries_again(database):
    key = (await database_sync_to_async(Token.objects.create)(user=await amake_account())).key
    handshake = ApplicationCommunicator(
        application,
        {
            "type": "websocket",
            "path": SOCKET_PATH,
            "headers": [],  # no Origin: a native app's handshake
            "subprotocols": ["users.v2", f"token.{key}"],
            "query_string": b"",
            "extensions": {"websocket.http.response": {}},
        },
    )
    locker = Database()  # pg_stat_activity stays as it was inside a transaction: another one
    with locker.conn, locker.conn.transaction():
        # The token's lookup waits for the table; then its connection is cut.
        locker.conn.execute("LOCK TABLE authtoken_token IN ACCESS EXCLUSIVE MODE")
        await handshake.send_input({"type": "websocket.connect"})
        await database.terminate_waiting("Lock")
    start = await handshake.receive_output(timeout=10)
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 503
    assert (await handshake.receive_output())["type"] == "websocket.http.response.body"
