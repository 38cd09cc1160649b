"""
Redis Sentinel: the primary dies, a replica takes over, writes and clients carry on.

Twice: as Redis ships, and with passwords (Redis' and the sentinels' own) and
TLS everywhere, on a self-signed certificate made for the test.
"""

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
REDIS_PASSWORD = "e2e-redis-password"
THROTTLE_KEYS = "*throttle_users_write_*"  # DRF's cache key, under Django's prefix
SENTINEL_PASSWORD = "e2e-sentinel-password"
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
# Redis and the sentinels on TLS only, clients unauthenticated by certificate:
# passwords are the credentials. Replication and the sentinels' own links use
# TLS too (tls-replication).
TLS_CONFIG = """\
port 0
tls-port {{port}}
tls-cert-file {cert}
tls-key-file {key}
tls-ca-cert-file {cert}
tls-auth-clients no
tls-replication yes
"""
SECURED_REDIS = f"requirepass {REDIS_PASSWORD}\nmasterauth {REDIS_PASSWORD}\n"
SECURED_SENTINEL = f"""\
requirepass {SENTINEL_PASSWORD}
sentinel sentinel-pass {SENTINEL_PASSWORD}
sentinel auth-pass {{master}} {REDIS_PASSWORD}
"""


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl; it is its own CA."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class RedisNode:
    """
    A redis-server, or a sentinel (``redis-server --sentinel``, which Debian's
    redis-sentinel is), of the test's own, from a config file it may rewrite.
    """

    def __init__(self, folder: Path, config: str, client_options: dict, sentinel=False):
        self.port, self.folder, self.client_options = free_port(), folder, client_options
        folder.mkdir()
        self.config = folder / "redis.conf"
        self.config.write_text(config.format(port=self.port, folder=folder))
        self.process = subprocess.Popen(
            ["redis-server", str(self.config), *(["--sentinel"] if sentinel else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, socket_timeout=2, decode_responses=True, **self.client_options
        )

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
    """
    A primary, one replica and three sentinels on loopback, ready to fail over;
    ``secured``: with passwords and TLS only.
    """

    def __init__(self, folder: Path, secured: bool):
        self.secured = secured
        # No wait before the first sync (Redis waits 5 s for more replicas to join).
        base = (
            'bind 127.0.0.1\nport {port}\ndir {folder}\nsave ""\nappendonly no\n'
            "repl-diskless-sync-delay 0\n"
        )
        sentinel_config = SENTINEL_CONFIG
        redis_options = sentinel_options = {}
        if secured:
            self.cert, key = self_signed_certificate(folder)
            tls = TLS_CONFIG.format(cert=self.cert, key=key)
            # Later lines win: "port 0" turns the plain port off.
            base, sentinel_config = base + tls + SECURED_REDIS, SENTINEL_CONFIG + tls
            tls_client = {"ssl": True, "ssl_ca_certs": str(self.cert)}
            redis_options = {**tls_client, "password": REDIS_PASSWORD}
            sentinel_options = {**tls_client, "password": SENTINEL_PASSWORD}
        self.primary = RedisNode(folder / "primary", base, redis_options)
        self.replica = RedisNode(
            folder / "replica", base + f"replicaof 127.0.0.1 {self.primary.port}\n", redis_options
        )
        self.nodes = [self.primary, self.replica]
        self.replica.wait_until(
            lambda c: c.info("replication")["master_link_status"] == "up", "replication"
        )
        # "sentinel auth-pass" must follow "sentinel monitor", which names the master.
        config = (
            (sentinel_config + (SECURED_SENTINEL if secured else ""))
            .replace("{master}", MASTER)
            .replace("{primary}", str(self.primary.port))
        )
        self.sentinels = [
            RedisNode(folder / f"sentinel{i}", config, sentinel_options, sentinel=True)
            for i in range(3)
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
        sentinels = {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
        }
        if not self.secured:
            return {**sentinels, "REDIS_URL": f"redis://{MASTER}/0"}
        return {
            **sentinels,
            "REDIS_URL": f"rediss://:{REDIS_PASSWORD}@{MASTER}/0",
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "REDIS_SENTINEL_TLS": "true",
            "REDIS_TLS_CA_FILE": str(self.cert),
        }

    def current_primary(self) -> RedisNode:
        port = self.primary_port()
        return next(node for node in (self.primary, self.replica) if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(params=["plain", "passwords-and-tls"])
def sentinel_set(request, tmp_path):
    missing = [p for p in ("redis-server", "openssl") if shutil.which(p) is None]
    if missing:
        if os.environ.get("USERSITE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"USERSITE_REQUIRE_SERVICES=1 but {', '.join(missing)} is not installed")
        pytest.skip(f"needs {' and '.join(missing)} (Debian's redis-server, openssl)")
    nodes = SentinelSet(tmp_path, secured=request.param == "passwords-and-tls")
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
    # A day's window keeps each write's throttle count in the cache to look at.
    env = {
        **sentinel_set.environment(),
        "METRICS_TOKEN": TOKEN,
        "USERS_REST_WRITE_RATE": "1000000/day",
    }
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

    # A change after the failover reaches everyone through the new primary, and
    # the REST throttle counts it in the cache there.
    with sentinel_set.current_primary().client() as primary:
        primary.delete(*primary.keys(THROTTLE_KEYS))
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{servers[1].url}/api/v1/users", json={"name": "after"})
        assert response.status_code == 201
        assert primary.keys(THROTTLE_KEYS), "the cache did not reach the new primary"
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
