import asyncio
import os
import signal
import sys
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

from frames import EPOCH, changes, snapshot, user
from scripted_server import ScriptedServer, within
from usersite_client import Update, Users
from usersite_client.watch import INTERRUPTED, describe, describe_window

SOURCE = Path(__file__).resolve().parents[1] / "src"


def environ_buffered() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


@asynccontextmanager
async def watching(url: str, *options: str):
    """Run ``usersite-watch`` as its own process, as a person would from a shell."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "usersite_client.watch", url, *options),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Output to a pipe is block-buffered, as when piped to grep, unless the program flushes.
        env={**environ_buffered(), "PYTHONPATH": str(SOURCE)},
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def read_line(process) -> str:
    return (await within(process.stdout.readline())).decode().rstrip("\n")


def test_a_snapshot_is_one_line_with_its_size():
    update = Update(EPOCH, 12, Users({"1": user(1), "2": user(2)}, 2), snapshot=True)

    assert describe(update) == [f"snapshot: 2 users (epoch {EPOCH}, version 12)"]


def test_changes_are_one_line_per_user_upserted_or_deleted():
    grace = user(2, "Grace", "grace@example.org")
    update = Update(
        EPOCH, 13, Users({"2": grace, "3": user(3)}, 2), False, (grace, user(3)), ("1",)
    )

    assert describe(update) == [
        "upserted 2: Grace <grace@example.org>",
        "upserted 3: User 3 <>",
        "deleted 1",
    ]


def test_a_window_is_how_many_match_then_one_line_per_user_shown():
    window = Users({"9": user(9, "Ada", "ada@example.org"), "4": user(4, "Bea")}, 153)

    assert describe_window(window, 20) == [
        "153 users match, 2 shown from place 21:",
        "  9: Ada <ada@example.org>",
        "  4: Bea <>",
    ]


async def test_the_watcher_prints_each_change_and_ends_quietly_on_ctrl_c(server):
    async with watching(server.url(), "--token", "f00d") as process:
        session = await server.session()
        await session.send(snapshot(12, user(1), user(2)))
        first = await read_line(process)
        await session.send(changes(12, 13, upserted=[user(3, "Grace")], deleted=["1"]))
        then = [await read_line(process), await read_line(process)]
        process.send_signal(signal.SIGINT)
        _, stderr = await within(process.communicate())

    assert session.offered == ["users.v2", "token.f00d"]
    assert first == f"snapshot: 2 users (epoch {EPOCH}, version 12)"
    assert then == ["upserted 3: Grace <>", "deleted 1"]
    assert process.returncode == INTERRUPTED
    assert stderr == b""


async def test_the_watcher_says_why_a_refused_socket_ended_it():
    async with (
        ScriptedServer(refusals=(HTTPStatus.FORBIDDEN,)) as server,
        watching(server.url(), "--token", "revoked") as process,
    ):
        stdout, stderr = await within(process.communicate())

    assert process.returncode == 1
    assert stdout == b""
    assert b"HTTP 403" in stderr
    assert b"Traceback" not in stderr


async def test_the_watcher_of_a_window_prints_it_with_the_total_each_time_it_changes(server):
    options = ("--search", "a", "--order", "name", "--limit", "2", "--offset", "4")
    async with watching(server.url(), *options) as process:
        session = await server.session()
        await session.send(snapshot(30, user(9, "bea"), user(4, "Ada"), total=7))
        first = [await read_line(process) for _ in range(3)]
        await session.send(changes(30, 31, upserted=[user(12, "Abe")], deleted=["9"], total=8))
        then = [await read_line(process) for _ in range(3)]
        process.send_signal(signal.SIGINT)
        await within(process.communicate())

    assert session.query == {"search": ["a"], "order": ["name"], "limit": ["2"], "offset": ["4"]}
    assert first == ["7 users match, 2 shown from place 5:", "  4: Ada <>", "  9: bea <>"]
    assert then == ["8 users match, 2 shown from place 5:", "  12: Abe <>", "  4: Ada <>"]


async def test_the_watcher_refuses_a_query_the_server_would_refuse_without_connecting(server):
    async with watching(server.url(), "--limit", "0") as process:
        stdout, stderr = await within(process.communicate())

    assert process.returncode == 2
    assert stdout == b""
    assert b"limit: a whole number from 1 to 500" in stderr
    assert server.sessions.empty()
