"""Redis Sentinel: the primary dies, a replica takes over, writes and clients carry on."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.protocol import State

from servers import ROOT, free_port
from tests.e2e.clients import ListWatcher, database_list, metric, scrape_metrics, unique_name

MASTER = "usersite"
TOKEN = "e2e-metrics-token"
# Short timeouts, so the failover takes seconds: a primary silent for a second
# is down, and a failover that stalls is retried after three.
SENTINEL_CONFIG = """\
port {port}
bind 127.0.0.1
dir {folder}
sentinel monitor {master} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {master} 1000
sentinel failover-timeout {master} 3000
sentinel parallel-syncs {master} 1
"""


class RedisNode:
    """A redis-server or redis-sentinel of the test's own, from a config file it may rewrite."""

    def __init__(self, folder: Path, program: str, config: str):
        self.port, self.folder = free_port(), folder
        folder.mkdir()
        self.config = folder / "redis.conf"
        self.config.write_text(config.format(port=self.port, folder=folder))
        self.process = subprocess.Popen(
            [program, str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def wait_until(self, ready, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.client() as client:
                    if ready(client):
                        return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{what} on port {self.port}: not in {timeout} s")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)


class SentinelSet:
    """A primary, one replica and three sentinels on loopback, ready to fail over."""

    def __init__(self, folder: Path):
        base = 'bind 127.0.0.1\nport {port}\ndir {folder}\nsave ""\nappendonly no\n'
        self.primary = RedisNode(folder / "primary", "redis-server", base)
        self.replica = RedisNode(
            folder / "replica", "redis-server", base + f"replicaof 127.0.0.1 {self.primary.port}\n"
        )
        self.nodes = [self.primary, self.replica]
        self.replica.wait_until(
            lambda c: c.info("replication")["master_link_status"] == "up", "replication"
        )
        config = SENTINEL_CONFIG.replace("{master}", MASTER).replace(
            "{primary}", str(self.primary.port)
        )
        self.sentinels = [
            RedisNode(folder / f"sentinel{i}", "redis-sentinel", config) for i in range(3)
        ]
        self.nodes += self.sentinels
        for sentinel in self.sentinels:
            # Each must know the replica and the two other sentinels to elect and promote.
            sentinel.wait_until(
                lambda c: (
                    (master := c.sentinel_master(MASTER))["num-slaves"] == 1
                    and master["num-other-sentinels"] == 2
                ),
                "sentinel discovery",
            )

    def primary_port(self) -> int:
        with self.sentinels[0].client() as client:
            return int(client.sentinel_get_master_addr_by_name(MASTER)[1])

    def environment(self) -> dict:
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_URL": f"redis://{MASTER}/0",
        }

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def sentinel_set(tmp_path):
    missing = [p for p in ("redis-server", "redis-sentinel") if shutil.which(p) is None]
    if missing:
        if os.environ.get("USERSITE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"USERSITE_REQUIRE_SERVICES=1 but {', '.join(missing)} is not installed")
        pytest.skip(f"needs {' and '.join(missing)} (Debian's redis-server, redis-sentinel)")
    nodes = SentinelSet(tmp_path)
    yield nodes
    nodes.stop()


class V1Watcher(ListWatcher):
    async def wait_for_name(self, name: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not self.lists or name not in {user["name"] for user in self.lists[-1]}:
                self.changed.clear()
                await self.changed.wait()


class ChangesWatcher:
    """A protocol v2 client's list: the snapshot, then every change set applied to it."""

    def __init__(self, ws):
        self.ws, self.users = ws, None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self.watch())

    async def watch(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame["type"] == "snapshot":
                self.users = {user["id"]: user for user in frame["users"]}
            elif frame["type"] == "changes":
                for user in frame["upserted"]:
                    self.users[user["id"]] = user
                for deleted in frame["deleted"]:
                    self.users.pop(deleted, None)
            self.changed.set()

    async def wait_for_name(self, name: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while name not in {user["name"] for user in self.holds() or ()}:
                self.changed.clear()
                await self.changed.wait()

    def holds(self) -> list | None:
        return (
            None if self.users is None else sorted(self.users.values(), key=lambda u: int(u["id"]))
        )

    async def wait_for(self, expected: list, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.holds() != expected:
                self.changed.clear()
                await self.changed.wait()


class Writer:
    """REST creates, one after another, spread over the servers; every answer recorded."""

    def __init__(self, servers: list):
        self.servers, self.created, self.answers, self.slowest = servers, [], [], 0.0
        self.running = True
        self.task = asyncio.create_task(self.write())

    async def write(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while self.running:
                server = self.servers[len(self.answers) % len(self.servers)]
                name = unique_name("failover")
                started = time.monotonic()
                try:
                    response = await http.post(f"{server.url}/api/v1/users", json={"name": name})
                    status = response.status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers.append(status)
                if status == 201:
                    self.created.append((started, name))
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.running = False
        await self.task

    def created_since(self, moment: float) -> str | None:
        """The first user whose create was sent after ``moment`` and succeeded."""
        return next((name for started, name in self.created if started > moment), None)


def test_checkservices_reaches_the_primary_the_sentinels_name(sentinel_set, server_env):
    check = subprocess.run(
        [sys.executable, "manage.py", "checkservices"],
        cwd=ROOT,
        env={**server_env, **sentinel_set.environment()},
        capture_output=True,
        text=True,
    )
    assert (check.returncode, check.stdout.strip()) == (0, "The database and Redis answer."), (
        check.stderr
    )


async def test_when_the_primary_dies_writes_succeed_and_clients_follow_the_failover(
    sentinel_set,
    start_server,  # in this order, so that the servers stop first
):
    env = {**sentinel_set.environment(), "METRICS_TOKEN": TOKEN}
    servers = [start_server("uvicorn", **env) for _ in range(2)]
    v1 = [await connect(server.ws_url) for server in servers]
    v2 = [await connect(server.ws_url, subprotocols=["users.v2"]) for server in servers]
    watchers = [V1Watcher(ws) for ws in v1] + [ChangesWatcher(ws) for ws in v2]
    for watcher in watchers:
        await watcher.wait_for(await database_list(servers[0]))
    writer = Writer(servers)
    await asyncio.sleep(1)

    old_primary = sentinel_set.primary_port()
    sentinel_set.primary.stop(signal.SIGKILL)
    killed = time.monotonic()
    async with asyncio.timeout(30):
        while sentinel_set.primary_port() == old_primary:
            await asyncio.sleep(0.05)
    failed_over = time.monotonic()
    assert sentinel_set.primary_port() == sentinel_set.replica.port

    # Every client holds the current list within 10 s of the failover, writes
    # still going on meanwhile: first the first user created after it.
    async with asyncio.timeout(10):
        while not (after := writer.created_since(failed_over)):
            await asyncio.sleep(0.05)
    for watcher in watchers:
        await watcher.wait_for_name(after, timeout=max(0.1, failed_over + 10 - time.monotonic()))
    caught_up = time.monotonic()
    await asyncio.sleep(1)
    await writer.stop()
    current = await database_list(servers[0])
    for watcher in watchers:
        await watcher.wait_for(current, timeout=5)
    assert all(ws.state is State.OPEN for ws in v1 + v2), "a socket was closed"

    answers = {status: writer.answers.count(status) for status in set(writer.answers)}
    print(
        f"failover {failed_over - killed:.2f} s after the kill; every client held the first "
        f"write after it {caught_up - failed_over:.2f} s after it; writes {answers}, slowest "
        f"{writer.slowest:.2f} s"
    )
    assert set(answers) <= {201, 503}, answers
    names = {user["name"] for user in current}
    assert {name for _, name in writer.created} <= names, "an acknowledged write was lost"

    # A change after the failover reaches everyone through the new primary.
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{servers[1].url}/api/v1/users", json={"name": "after"})
    assert response.status_code == 201
    current = await database_list(servers[0])
    for watcher in watchers:
        await watcher.wait_for(current, timeout=5)
    for server in servers:
        samples = await scrape_metrics(server, TOKEN)
        assert metric(samples, "usersite_relay_rejoins_total") >= 1
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
    for ws in v1 + v2:
        await ws.close()
