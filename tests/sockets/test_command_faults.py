"""
Socket commands whose database fails under them, on a real PostgreSQL.

The failures are real: a trigger holds the write, and another connection
terminates its backend (pg_terminate_backend), before the commit or during it.
Every such command is answered with an error frame that says what became of
the write, and the socket stays open.
"""

import asyncio
import json
import logging

import psycopg
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.helpers import amake_account
from users.models import CommandReceipt, User
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates PostgreSQL backends"),
]

# Functions and triggers that make a write wait, fail, or lose its connection.
SQL = {
    "stall": """
        CREATE FUNCTION faults_stall() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
        CREATE TRIGGER faults_stall BEFORE INSERT OR UPDATE ON users_user
        FOR EACH ROW EXECUTE FUNCTION faults_stall();
    """,
    "cut_at_commit": """
        CREATE FUNCTION faults_cut() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER faults_cut AFTER INSERT ON users_commandreceipt
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION faults_cut();
    """,
    "fail": """
        CREATE FUNCTION faults_fail() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'a bug in a trigger'; END $$;
        CREATE TRIGGER faults_fail BEFORE INSERT ON users_user
        FOR EACH ROW EXECUTE FUNCTION faults_fail();
    """,
}
CLEAN_UP = """
    DROP TRIGGER IF EXISTS faults_stall ON users_user;
    DROP TRIGGER IF EXISTS faults_cut ON users_commandreceipt;
    DROP TRIGGER IF EXISTS faults_fail ON users_user;
    DROP FUNCTION IF EXISTS faults_stall(), faults_cut(), faults_fail();
"""


class Database:
    """A connection of the test's own to the test database, beside the server's."""

    def __init__(self):
        settings = connection.settings_dict
        self.conn = psycopg.connect(
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or None,
            dbname=settings["NAME"],
            autocommit=True,
        )

    def install(self, fault: str) -> None:
        self.conn.execute(SQL[fault])

    def remove_faults(self) -> None:
        self.conn.execute(CLEAN_UP)

    def names(self) -> list[str]:
        return [name for (name,) in self.conn.execute("SELECT name FROM users_user ORDER BY id")]

    def receipts(self, request_id: str) -> int:
        query = "SELECT count(*) FROM users_commandreceipt WHERE request_id = %s"
        return self.conn.execute(query, [request_id]).fetchone()[0]

    async def terminate_the_stalled_writer(self) -> None:
        """Wait until a write sleeps in the stalling trigger, then cut its connection."""
        await self.terminate_waiting("Timeout")  # pg_sleep's wait

    async def terminate_waiting(self, wait_event_type: str) -> None:
        """Wait until another backend waits (for a lock, a timeout), then cut its connection."""
        # This database's only: the server is shared with other tests and other work.
        query = (
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = %s "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        async with asyncio.timeout(10):
            # PostgreSQL tells no one that a backend began to wait: ask it.
            while not (waiting := self.conn.execute(query, [wait_event_type]).fetchall()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        for (pid,) in waiting:
            self.conn.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.fixture
def database():
    database = Database()
    yield database
    database.remove_faults()
    database.conn.close()


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
