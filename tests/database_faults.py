"""
Real database failures for tests, on PostgreSQL: triggers that make a write
wait, fail or lose its connection, and a connection of the test's own that
installs them, cuts other backends and reads what was stored.
"""

import asyncio

import psycopg
import pytest
from django.db import connection

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
    "cut_on_insert": """
        CREATE FUNCTION faults_cut() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
        CREATE TRIGGER faults_cut_on_insert BEFORE INSERT ON users_user
        FOR EACH ROW EXECUTE FUNCTION faults_cut();
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
    DROP TRIGGER IF EXISTS faults_cut_on_insert ON users_user;
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
