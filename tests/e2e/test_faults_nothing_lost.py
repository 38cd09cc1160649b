"""
Faults with nothing lost: two server processes behind a balancer, on a
PostgreSQL and a Redis of the test's own, with 200 protocol v2 clients
(clients/python's LiveUsers) and a steady stream of acknowledged socket writes.

One fault at a time (``kill -9`` of a process and its restart, a Redis
restart, ``pg_ctl restart``); after each, every acknowledged write is in the
database once, no refused write is there, every client holds the database's
list within 10 s, and the servers logged no traceback; then the same through
a Redis Sentinel failover. The drop test cuts one
client's connection every 2 s while it writes (USERSITE_DROP_SECONDS, 12 by
default; 60 as docs/reliability.md ran it). Figures: docs/reliability.md.
"""

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from usersite_client import CommandError, LiveUsers
from usersite_client.backoff import Backoff

from servers import NO_WRITE_LIMITS, ROOT, ServerProcess, free_port
from tests.e2e import own_postgres
from tests.e2e.balancer import Balancer
from tests.e2e.conftest import RedisServer
from tests.e2e.test_sentinel import SentinelSet

CLIENTS = 200
WRITERS = 3
WRITE_PAUSE = 0.05  # seconds between one writer's acknowledged write and its next
WRITES_AFTER_A_FAULT = 30  # acknowledged writes awaited after each fault, before the checks
CONVERGENCE_TIMEOUT = 10.0
CUT_EVERY = 2.0

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="runs in the Redis + PostgreSQL run (with a PostgreSQL and a Redis of its own)",
    ),
]


def reconnecting() -> Backoff:
    """Quick reconnections: the balancer always has a live process to offer."""
    return Backoff(0.1, 1.0)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL of the module's own, which a test may restart."""
    problem = own_postgres.missing()
    if problem is not None:
        skip_or_fail(problem)
    server = own_postgres.PostgresServer().start()
    yield server
    server.stop()


def skip_or_fail(problem: str) -> None:
    if os.environ.get("USERSITE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"USERSITE_REQUIRE_SERVICES=1, but this test {problem}")
    pytest.skip(problem)


@contextmanager
def servers_on(postgres, folder: Path, database: str, redis_env: dict):
    """Two uvicorn processes on a new database of ``postgres`` and the Redis ``redis_env`` names."""
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REDIS_SENTINEL")},
        **NO_WRITE_LIMITS,
        **redis_env,
        "DATABASE_URL": postgres.url(database),
        "DEBUG": "true",
        "USERS_ANONYMOUS_WRITES": "true",
        "PYTHONUNBUFFERED": "1",
    }
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True)
    servers = []
    for _ in range(2):
        port = free_port()
        log = folder / f"uvicorn-{port}.log"
        servers.append(ServerProcess(sys.executable, "uvicorn", port, env, log))
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(ServerProcess.start, servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory):
    """Two uvicorn processes on the module's PostgreSQL and a Redis of their own."""
    folder = tmp_path_factory.mktemp("faults")
    redis = RedisServer(folder)
    redis.start()
    try:
        with servers_on(postgres, folder, "usersite", {"REDIS_URL": redis.url}) as servers:
            yield SimpleNamespace(
                postgres=postgres, redis=redis, servers=servers, database="usersite"
            )
    finally:
        if redis.process.poll() is None:
            redis.stop()


@pytest.fixture
def sentinel_cluster(postgres, tmp_path):
    """Two uvicorn processes on Redis Sentinel (a primary, a replica, three sentinels)."""
    if shutil.which("redis-server") is None:
        skip_or_fail("needs redis-server (Debian's), which runs the sentinels too")
    sentinels = SentinelSet(tmp_path, secured=False)
    try:
        with servers_on(postgres, tmp_path, "sentinel", sentinels.environment()) as servers:
            yield SimpleNamespace(
                postgres=postgres, sentinels=sentinels, servers=servers, database="sentinel"
            )
    finally:
        sentinels.stop()


class Follower:
    """A LiveUsers, and the newest list it yielded."""

    def __init__(self, url: str):
        self.live = LiveUsers(url, reconnect=reconnecting())
        self.users: dict | None = None
        self.changed = asyncio.Event()
        self.updates = []

    async def follow(self) -> None:
        async for update in self.live.updates():
            self.users = dict(update.users)
            self.updates.append(update)
            self.changed.set()

    async def holds(self, expected: dict) -> None:
        while self.users != expected:
            self.changed.clear()
            await self.changed.wait()


class Writers:
    """A few LiveUsers that create users one after another, each waiting for its answer."""

    def __init__(self, url: str, count: int, tag: str):
        self.tag = tag
        self.lives = [LiveUsers(url, reconnect=reconnecting()) for _ in range(count)]
        # The first writer resends nothing the database failed: its refusals
        # are the ones whose writes must not be stored.
        self.lives[0].unavailable_retries = 0
        self.acked: dict[str, str] = {}  # name: the id its ack gave
        self.refused: dict[str, str] = {}  # name: the error's code
        self.running = asyncio.Event()
        self.idle = [asyncio.Event() for _ in range(count)]
        self.answered = asyncio.Event()

    async def write(self, index: int) -> None:
        for number in itertools.count():
            if not self.running.is_set():
                self.idle[index].set()
                await self.running.wait()
                self.idle[index].clear()
            name = f"{self.tag} {index}-{number}"
            try:
                self.acked[name] = (await self.lives[index].create(name=name))["id"]
            except CommandError as error:
                self.refused[name] = error.code
            self.answered.set()
            await asyncio.sleep(WRITE_PAUSE)

    async def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        target = len(self.acked) + count
        async with asyncio.timeout(timeout):
            while len(self.acked) < target:
                self.answered.clear()
                await self.answered.wait()

    async def pause(self, timeout: float = 60) -> None:
        """Stop writing once every write under way has its answer."""
        self.running.clear()
        async with asyncio.timeout(timeout):
            for idle in self.idle:
                await idle.wait()


def database_users(cluster) -> dict:
    """Every user as the database holds it, in the wire's shape, by id."""
    with psycopg.connect(cluster.postgres.url(cluster.database)) as conn:
        rows = conn.execute("SELECT id, name, email FROM users_user").fetchall()
    return {str(id): {"id": str(id), "name": name, "email": email} for id, name, email in rows}


def check_writes(users: dict, writers: Writers) -> None:
    """Every acknowledged write is stored once, under its id; no refused one is stored."""
    by_name = {}
    for user in users.values():
        by_name.setdefault(user["name"], []).append(user["id"])
    doubled = {name: ids for name, ids in by_name.items() if len(ids) > 1}
    assert not doubled, f"written twice: {doubled}"
    lost = {name: id for name, id in writers.acked.items() if by_name.get(name) != [id]}
    assert not lost, f"acknowledged but not stored as acknowledged: {lost}"
    # outcome_unknown says that the write may have been stored.
    refused = {name: code for name, code in writers.refused.items() if code != "outcome_unknown"}
    stored = {name: code for name, code in refused.items() if name in by_name}
    assert not stored, f"refused but stored: {stored}"


def log_marks(servers) -> list[int]:
    return [len(server.log.read_bytes()) for server in servers]


def check_logs(servers, marks: list[int]) -> tuple[int, int]:
    """
    No traceback since ``marks``; return how many warnings were logged, and how
    many commands met a database failure (answered unavailable or outcome_unknown).
    """
    warnings = failed_commands = 0
    for server, mark in zip(servers, marks, strict=True):
        text = server.log.read_bytes()[mark:].decode(errors="replace")
        assert "Traceback" not in text, text
        assert "Exception in ASGI application" not in text, text
        warnings += text.count(" WARNING ")
        failed_commands += text.count("A socket command met a database failure")
    return warnings, failed_commands


async def kill_and_restart(cluster) -> None:
    victim = cluster.servers[0]
    victim.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.process.wait)
    await asyncio.sleep(1)  # down for a second: its clients move to the other process
    await asyncio.to_thread(victim.start)


async def restart_redis(cluster) -> None:
    await asyncio.to_thread(cluster.redis.stop)
    await asyncio.sleep(1)  # down for a second; it comes back empty
    await asyncio.to_thread(cluster.redis.start)


async def restart_postgres(cluster) -> None:
    await asyncio.to_thread(cluster.postgres.restart)


async def fail_over(cluster) -> None:
    """kill -9 of the Redis primary; the sentinels promote the replica."""
    sentinels = cluster.sentinels
    old_primary = await asyncio.to_thread(sentinels.primary_port)
    sentinels.primary.stop(signal.SIGKILL)
    async with asyncio.timeout(30):
        while await asyncio.to_thread(sentinels.primary_port) == old_primary:
            await asyncio.sleep(0.1)


async def test_acknowledged_writes_survive_a_kill_a_redis_restart_and_a_postgres_restart(cluster):
    await survive(
        cluster,
        {
            "kill -9 of a process, and its restart": kill_and_restart,
            "a Redis restart": restart_redis,
            "pg_ctl restart": restart_postgres,
        },
    )


async def test_acknowledged_writes_survive_a_sentinel_failover(sentinel_cluster):
    await survive(sentinel_cluster, {"a Sentinel failover": fail_over})


async def survive(cluster, faults: dict) -> None:
    """Cause each of ``faults`` in turn under clients and writers; check that nothing was lost."""
    ports = [server.port for server in cluster.servers]
    async with Balancer(ports) as balancer, AsyncExitStack() as stack:
        followers = [Follower(balancer.ws_url) for _ in range(CLIENTS)]
        writers = Writers(balancer.ws_url, WRITERS, "faults")
        for live in [follower.live for follower in followers] + writers.lives:
            await stack.enter_async_context(live)
        tasks = [asyncio.create_task(follower.follow()) for follower in followers]
        writers.running.set()
        tasks += [asyncio.create_task(writers.write(index)) for index in range(WRITERS)]
        try:
            await writers.wait_for_acks(WRITES_AFTER_A_FAULT)
            for fault, cause in faults.items():
                marks = log_marks(cluster.servers)
                acked, refused = len(writers.acked), len(writers.refused)
                connections = balancer.connections
                started = time.monotonic()
                await cause(cluster)
                await writers.wait_for_acks(WRITES_AFTER_A_FAULT)
                await writers.pause()
                users = await asyncio.to_thread(database_users, cluster)
                check_writes(users, writers)
                paused = time.monotonic()
                try:
                    async with asyncio.timeout(CONVERGENCE_TIMEOUT):
                        for follower in followers:
                            await follower.holds(users)
                except TimeoutError:
                    behind = sum(follower.users != users for follower in followers)
                    raise AssertionError(
                        f"after {fault}: {behind} of {CLIENTS} clients did not hold the "
                        f"database's list within {CONVERGENCE_TIMEOUT} s"
                    ) from None
                warnings, failed_commands = check_logs(cluster.servers, marks)
                print(
                    f"{fault}: {len(writers.acked) - acked} writes acknowledged and "
                    f"{len(writers.refused) - refused} refused in {paused - started:.1f} s "
                    f"({failed_commands} answers unavailable or outcome_unknown, resent "
                    f"unless refused); {balancer.connections - connections} reconnections; "
                    f"all {CLIENTS} clients held the {len(users)} users "
                    f"{time.monotonic() - paused:.2f} s after the last write; "
                    f"{warnings} warnings logged, no traceback"
                )
                writers.running.set()
        finally:
            for task in tasks:
                task.cancel()
    assert writers.acked, "no write was acknowledged"


async def test_a_client_cut_every_2_s_gets_every_change_and_every_command_once(cluster):
    seconds = float(os.environ.get("USERSITE_DROP_SECONDS", "12"))
    ports = [server.port for server in cluster.servers]
    marks = log_marks(cluster.servers)
    async with (
        Balancer(ports) as steady,
        Balancer(ports) as dropping,
        AsyncExitStack() as stack,
    ):
        others = Writers(steady.ws_url, 1, "elsewhere")  # the changes the client must get
        client = Follower(dropping.ws_url)
        for live in [*others.lives, client.live]:
            await stack.enter_async_context(live)
        following = asyncio.create_task(client.follow())
        others.running.set()
        writing = asyncio.create_task(others.write(0))
        commands, cuts = {}, 0
        deadline = time.monotonic() + seconds
        next_cut = time.monotonic() + CUT_EVERY

        async def cut_every_2_s():
            nonlocal cuts, next_cut
            while True:
                await asyncio.sleep(next_cut - time.monotonic())
                dropping.cut()
                cuts += 1
                next_cut += CUT_EVERY

        cutting = asyncio.create_task(cut_every_2_s())
        try:
            for number in itertools.count():
                if time.monotonic() > deadline:
                    break
                name = f"dropped {number}"
                created = await client.live.create(name=name)
                renamed = await client.live.update(created["id"], name=f"{name} renamed")
                commands[created["id"]] = renamed
            cutting.cancel()
            await others.pause()
            users = await asyncio.to_thread(database_users, cluster)
            async with asyncio.timeout(CONVERGENCE_TIMEOUT):
                await client.holds(users)
        finally:
            for task in (following, writing, cutting):
                task.cancel()

    for user_id, renamed in commands.items():
        assert users.get(user_id) == renamed, f"command on user {user_id} not applied"
    names = [user["name"] for user in users.values()]
    dropped = [name for name in names if name.startswith("dropped ")]
    assert sorted(dropped) == sorted(user["name"] for user in commands.values())
    check_writes(users, others)
    snapshots = sum(update.snapshot for update in client.updates)
    assert snapshots == 1, "a reconnection did not resume: it started over from a snapshot"
    assert cuts >= seconds // CUT_EVERY - 1
    check_logs(cluster.servers, marks)
    print(
        f"drop test: {cuts} cuts in {seconds:g} s; {2 * len(commands)} commands acknowledged "
        f"and applied once; {len(client.updates) - 1} change sets followed, "
        f"{len(others.acked)} writes elsewhere all held; through {dropping.connections} connections"
    )
