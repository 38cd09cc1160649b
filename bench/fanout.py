#!/usr/bin/env python
"""
Fan-out benchmark of the live list, against real server processes.

    .venv/bin/python bench/fanout.py                  # fan-out: project, floor, naive
    .venv/bin/python bench/fanout.py --scenario burst         # 200 creates in 1 s, 500 clients
    .venv/bin/python bench/fanout.py --scenario memory --clients 5000
    .venv/bin/python bench/fanout.py --layer core --processes 2 --consumers project  # Redis
    .venv/bin/python bench/fanout.py --compare v1:1000,v2:1000,v2:100000   # protocol v2
    .venv/bin/python bench/fanout.py --scenario resume --protocol v2 --users 100000

fanout: start the server, prefill M users, connect N clients, make K creates one
after another through REST, and report p50/p99 of the time until every client
holds the new list, deliveries per second and the server's CPU seconds; for
each consumer, one after another, each on the same uvicorn command
(servers.py):
  project  the project (usersite.asgi), its clients speaking --protocol;
  floor    bench/floor.py, a bare ASGI application (no Django) that keeps the
           sockets and sends one pre-encoded list of the same size to all of
           them on each create: what the server stack alone can do. It has no
           database and no channel layer (--layer does not apply to it) and
           runs in one process only;
  naive    bench/naive.py, written as the Channels tutorial teaches.
Ratio lines follow: project/floor (the issue's target: at most 1.3x at N=500,
M=1,000) and naive/project (at least 4x). With --compare, the project runs
once per PROTOCOL:USERS pair instead, and each pair's p50 is divided by every
earlier one's (protocol v2's targets: v2:100000/v2:1000 at most 1.5x,
v2:1000/v1:1000 below 1).
burst: K creates sent within --burst-seconds (1), evenly spaced and without
waiting for answers, by 10 of the N clients over their sockets (or through
REST with --via rest); time until every client holds the final list, and
whether any client ever received an older list. Protocol v1 only.
memory: resident memory per idle socket on one server process.
resume: one server process, N clients holding the list; stop the process,
make --changes changes through the ORM (manage.py shell) while it is down,
start it again on the same port. The clients reconnect every
--retry-interval seconds (v2: with ?epoch=&version= of the list they hold);
reported are the bytes they received after the restart (everything on the
wire: handshakes, frame headers), against N x the v1 list's size, and the
time from the server answering again until every client holds the new list.
(bench/storm.py: the same on two processes, one killed, clients in several
processes.)

--protocol: v1 clients offer no subprotocol and hold the newest frame; v2
clients offer "users.v2" and hold the list by applying snapshot and changes
frames (bench/v2list.py); a fan-out's latency ends when each client has the
frame that carries the new user. Every fan-out and resume checks at the end
that each client holds the list REST returns (wrong_lists).

--count: run the project as bench/counted.py, which counts list reads, SQL
statements, encodings and frames offered in each server process; printed
per create (fanout) or since the restart (resume).

--layer: memory (the default: the in-memory layer, one process), core
(REDIS_URL set to --redis-url: channels-redis' core layer, production's
choice) or pubsub (the same, with DJANGO_SETTINGS_MODULE=bench.settings,
which swaps in channels-redis' pub/sub layer for comparison).

The client side runs in this process; its CPU use is printed beside the
server's, so a run where the client saturated its core can be told apart.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus  # noqa: E402

from bench.v2list import Decoder, HeldList, Truth  # noqa: E402
from servers import NO_WRITE_LIMITS, ServerProcess, free_port  # noqa: E402

APPS = {
    "project": "usersite.asgi:application",
    "floor": "bench.floor:application",
    "naive": "bench.naive:application",
}
# With REDIS_URL, usersite.settings selects channels-redis' core layer;
# bench/settings.py swaps in its pub/sub layer.
LAYER_ENV = {
    "memory": {},
    "core": {},
    "pubsub": {"DJANGO_SETTINGS_MODULE": "bench.settings"},
}


# The protocols' subprotocols, as the clients offer them: v1's clients (the
# Dart example's) offer none.
SUBPROTOCOLS = {"v1": None, "v2": ["users.v2"]}

# M users, ids 1 to M as bench/floor.py has them, without the ORM's per-row
# deletes (a reused --database-url is emptied by plain DELETEs).
SEED = """
from django.db import connection
from users.models import CommandReceipt, User, UserTombstone
with connection.cursor() as cursor:
    for model in (User, UserTombstone, CommandReceipt):
        cursor.execute(f"DELETE FROM {{model._meta.db_table}}")
User.objects.bulk_create(
    User(name=f"Bench user {{i}}", email=f"user{{i}}@example.org") for i in range({users})
)
"""

# Changes made through the ORM while no server runs (the resume scenario):
# creates, renames and deletes in turn, each its own transaction; then the
# list's epoch and version, and the list as protocol v1 encodes it.
CHANGE_WHILE_DOWN = """
from users.models import User
from users.serializers import UserSerializer
from users.live.snapshots import current_version, dump
for i in range({changes}):
    if i % 3 == 0:
        User.objects.create(name=f"Made while down {{i}}")
    elif i % 3 == 1:
        user = User.objects.order_by("id")[i]
        user.name += " (renamed while down)"
        user.save()
    else:
        User.objects.order_by("id")[{changes} + i].delete()
print(*current_version())
print(dump(UserSerializer(User.objects.order_by("id"), many=True).data))
"""


async def server_counts(urls: list[str]) -> Counter:
    """bench/counted.py's counters of the servers at ``urls``, summed."""
    total = Counter()
    async with httpx.AsyncClient(timeout=60) as http:
        for url in urls:
            total.update((await http.get(f"{url}/bench/counts")).json())
    return total


class Deployment:
    """
    Server processes on a fresh, prefilled database with the chosen channel layer.

    The floor has neither: it makes its M users itself (FLOOR_USERS).
    """

    def __init__(self, args, consumer: str, workdir: Path, users: int | None = None):
        users = args.users if users is None else users
        name = f"{consumer}-{users}"
        database_url = args.database_url or f"sqlite:///{workdir / f'{name}.sqlite3'}"
        self.env = {
            **os.environ,
            **LAYER_ENV[args.layer],
            "FLOOR_USERS": str(users),
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url if args.layer != "memory" else "",
            "DEBUG": "false",
            "HTTPS": "false",
            "SECRET_KEY": "benchmark-only",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "USERS_ANONYMOUS_READS": "true",
            "USERS_ANONYMOUS_WRITES": "true",
            **NO_WRITE_LIMITS,
            "LOG_LEVEL": "WARNING",
        }
        if consumer != "floor":
            if args.layer != "memory":
                redis.Redis.from_url(args.redis_url).flushdb()
            self.manage("migrate", "--noinput", "-v0")
            self.manage("shell", "-v0", "-c", SEED.format(users=users))
        self.counted = consumer == "project" and args.count
        app = "bench.counted:application" if self.counted else APPS[consumer]
        self.servers = [
            ServerProcess(
                sys.executable, "uvicorn", free_port(), self.env,
                workdir / f"{name}-{index}.log", app=app,
            ).start()
            for index in range(args.processes)
        ]  # fmt: skip
        self.watch_processes()

    def watch_processes(self) -> None:
        """Measure the servers' processes from now on (again after a restart)."""
        self.processes = [psutil.Process(server.process.pid) for server in self.servers]

    def manage(self, *command: str) -> str:
        """Run a manage.py command on the servers' database; return what it printed."""
        return subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def cpu_seconds(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes)

    async def counts(self) -> Counter:
        """bench/counted.py's counters, summed over the servers (empty without --count)."""
        if not self.counted:
            return Counter()
        return await server_counts([server.url for server in self.servers])

    async def users(self) -> list:
        """The list as the database has it now, through REST."""
        async with httpx.AsyncClient(timeout=120) as http:
            return (await http.get(f"{self.servers[0].url}/api/v1/users")).json()["users"]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clients:
    """
    N sockets spread over the servers, each holding the list it was sent.

    v1: the newest frame (the whole list), kept as text. v2: the list built
    from snapshot and changes frames (bench/v2list.py). With ``reconnect``, a
    client whose connection ends connects again every ``retry`` seconds, or
    after ``backoff``'s delays, resuming from the list it holds (v2:
    ``?epoch=&version=``).
    """

    def __init__(
        self, protocol: str = "v1", reconnect: bool = False, retry: float = 0.1, backoff=None
    ):
        self.protocol, self.reconnect, self.retry = protocol, reconnect, retry
        # A callable giving each reconnecting client its delays (the Python
        # client's Backoff: waited before every attempt); None: no wait before
        # the first attempt, then every ``retry`` seconds (all at once).
        self.backoff = backoff
        # Failed reconnect attempts: by HTTP status if answered, else by exception.
        self.failed_attempts = Counter()
        self.sockets, self.latest, self.frames, self.went_back = [], [], 0, 0
        self.target, self.missing, self.all_have_it = None, 0, asyncio.Event()
        self.decode = Decoder()
        self.kinds = Counter()  # v2: frames received by type
        self.broken = 0  # v2: changes that did not start at the version held
        self.wire_bytes = 0  # everything received, handshakes and frame headers included
        # With reconnect, v1's equal lists are held once: 500 of a 100,000-user list are 3.7 GB.
        self.interned = {}
        self.reconnected_at = []

        clients = self

        class CountingConnection(ClientConnection):
            def data_received(self, data: bytes) -> None:
                clients.wire_bytes += len(data)
                super().data_received(data)

        self.connection_class = CountingConnection

    async def open(self, servers, count: int) -> None:
        """Connect ``count`` clients, 20 at a time, each batch once the last holds its lists."""
        # Small batches: channels-redis' connection pool refuses a storm of
        # group_add calls from the naive consumer ("Too many connections"); and
        # waiting for each batch's lists bounds the frames in flight to 20.
        self.servers = servers
        self.latest = [HeldList() if self.protocol == "v2" else "" for _ in range(count)]
        self.received_at = [0.0] * count
        self.has_target = [False] * count
        self.sockets = [None] * count
        self.readers = []
        for start in range(0, count, 20):
            batch = range(start, min(start + 20, count))
            opened = await asyncio.gather(*(self.connect(i) for i in batch))
            for i, socket in zip(batch, opened, strict=True):
                self.sockets[i] = socket
                self.readers.append(asyncio.create_task(self.read(i)))
            while not all(self.holds_a_list(i) for i in batch):
                await asyncio.sleep(0.01)

    def holds_a_list(self, index: int) -> bool:
        if self.protocol == "v2":
            return self.latest[index].version is not None
        return bool(self.latest[index])

    async def connect(self, index: int):
        url = self.servers[index % len(self.servers)].ws_url
        if self.protocol == "v2":
            url += self.latest[index].resume_query()
        return await connect(
            url,
            max_size=None,
            subprotocols=SUBPROTOCOLS[self.protocol],
            create_connection=self.connection_class,
            proxy=None,  # loopback; websockets would read the proxy variables on every connect
        )

    async def read(self, index: int) -> None:
        while True:
            try:
                async for frame in self.sockets[index]:
                    self.take(index, frame)
            except ConnectionClosed:
                pass
            if not self.reconnect:
                return
            delays = self.backoff() if self.backoff else None
            while True:
                if delays:
                    await asyncio.sleep(delays.next_delay())
                try:
                    self.sockets[index] = await self.connect(index)
                    break
                except (OSError, InvalidHandshake, TimeoutError) as error:
                    failure = (
                        error.response.status_code
                        if isinstance(error, InvalidStatus)
                        else type(error).__name__
                    )
                    self.failed_attempts[failure] += 1
                    if not delays:
                        await asyncio.sleep(self.retry)
            self.reconnected_at.append(asyncio.get_running_loop().time())

    def take(self, index: int, frame: str) -> None:
        self.frames += 1
        if self.protocol == "v2":
            held = self.latest[index]
            before = held.version
            message = self.decode(frame)
            self.kinds[message["type"]] += 1
            self.broken += not held.apply(message)
            self.went_back += before is not None and held.version < before
        else:
            # The benchmarks only add users, so an older list is a shorter one;
            # comparing lengths keeps this client's CPU low (see the module docstring).
            self.went_back += len(frame) < len(self.latest[index])
            self.latest[index] = self.interned.setdefault(frame, frame) if self.reconnect else frame
        if self.target and not self.has_target[index] and self.target in frame:
            self.has_target[index] = True
            self.missing -= 1
            if not self.missing:
                self.all_have_it.set()
        self.received_at[index] = asyncio.get_running_loop().time()

    def expect(self, marker: str) -> None:
        """Wait for the frames that carry ``marker`` (all_have_it)."""
        self.target, self.missing = marker, len(self.sockets)
        self.has_target = [False] * len(self.sockets)
        self.all_have_it.clear()

    def count_current(self, text: str, head: tuple[str, int]) -> int:
        """
        Return how many clients hold the list ``text`` (v1; equal lists are
        interned, so checked by identity) or its version ``head`` (v2).
        """
        if self.protocol == "v1":
            text = self.interned.setdefault(text, text)
            return sum(held is text for held in self.latest)
        return sum((held.epoch, held.version) == head for held in self.latest)

    def count_wrong(self, users: list, head: tuple[str, int] | None = None) -> int:
        """Return how many clients hold a list other than ``users`` (v2: or not at ``head``)."""
        if self.protocol == "v1":
            text = encode(users)
            text = self.interned.get(text, text)
            # Decoded only when the text differs: the naive consumer spaces its JSON.
            return sum(
                held is not text and held != text and json.loads(held) != users
                for held in self.latest
            )
        truth = Truth(users)
        return sum(
            not truth.held_by(held) or (head is not None and (held.epoch, held.version) != head)
            for held in self.latest
        )

    async def close(self) -> None:
        self.reconnect = False
        await asyncio.gather(*(ws.close() for ws in self.sockets if ws is not None))
        for reader in self.readers:
            reader.cancel()


def encode(users: list) -> str:
    """The list as the server encodes it: protocol v1's frame."""
    return json.dumps(users, ensure_ascii=False, separators=(",", ":"))


async def fanout(args, consumer: str, protocol: str, users: int, workdir: Path) -> dict:
    deployment = Deployment(args, consumer, workdir, users)
    clients = Clients(protocol)
    try:
        await clients.open(deployment.servers, args.clients)
        creates = args.naive_creates if consumer == "naive" else args.creates
        latencies = []
        counts = await deployment.counts()
        cpu, client_cpu, frames = deployment.cpu_seconds(), client_cpu_seconds(), clients.frames
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=60) as http:
            for k in range(creates):
                name = f"Fan-out {uuid.uuid4().hex}"
                clients.expect(name)
                sent = time.perf_counter()
                server = deployment.servers[k % len(deployment.servers)]
                response = await http.post(f"{server.url}/api/v1/users", json={"name": name})
                response.raise_for_status()
                await asyncio.wait_for(clients.all_have_it.wait(), 120)
                latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        cpu, client_cpu = deployment.cpu_seconds() - cpu, client_cpu_seconds() - client_cpu
        frames = clients.frames - frames
        counts = await deployment.counts() - counts
        latencies.sort()
        return {
            "consumer": consumer,
            "protocol": protocol,
            "users": users,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "deliveries_per_s": frames / elapsed,
            "server_cpu_s": cpu,
            "client_cpu_share": client_cpu / elapsed,
            "went_back": clients.went_back,
            "wrong_lists": clients.count_wrong(await deployment.users()),
            **({"broken_changes": clients.broken} if protocol == "v2" else {}),
            **{f"{name}_per_create": count / creates for name, count in sorted(counts.items())},
        }
    finally:
        await clients.close()
        deployment.stop()


async def burst(args, workdir: Path) -> dict:
    deployment = Deployment(args, "project", workdir)
    clients = Clients()
    try:
        await clients.open(deployment.servers, args.clients)
        writers = clients.sockets[: min(10, args.clients)]  # clients that also create
        cpu, client_cpu = deployment.cpu_seconds(), client_cpu_seconds()
        loop = asyncio.get_running_loop()
        started = loop.time()
        spacing = args.burst_seconds / args.creates

        async def create(k: int, http: httpx.AsyncClient) -> None:
            # Open loop: create k is sent at its time, whether or not earlier ones are done.
            await asyncio.sleep(started + k * spacing - loop.time())
            name = f"Burst {k}"
            if args.via == "socket":
                await writers[k % len(writers)].send(json.dumps({"action": "create", "name": name}))
            else:
                server = deployment.servers[k % len(deployment.servers)]
                response = await http.post(f"{server.url}/api/v1/users", json={"name": name})
                response.raise_for_status()

        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:
            await asyncio.gather(*(create(k, http) for k in range(args.creates)))
            last_sent = loop.time()
            url = f"{deployment.servers[0].url}/api/v1/users"
            while len(final := (await http.get(url)).json()["users"]) < args.users + args.creates:
                await asyncio.sleep(0.05)
        final_text = json.dumps(final, ensure_ascii=False, separators=(",", ":"))
        while any(frame != final_text for frame in clients.latest):
            await asyncio.sleep(0.01)
        converged = max(clients.received_at)  # when the last client got the final list
        return {
            "creates": args.creates,
            "via": args.via,
            "sent_within_s": last_sent - started,
            "converged_after_last_create_s": converged - last_sent,
            "converged_after_first_create_s": converged - started,
            "server_cpu_s": deployment.cpu_seconds() - cpu,
            "client_cpu_share": (client_cpu_seconds() - client_cpu) / (converged - started),
            "went_back": clients.went_back,
        }
    finally:
        await clients.close()
        deployment.stop()


async def memory(args, workdir: Path) -> dict:
    args.processes = 1
    deployment = Deployment(args, "project", workdir)
    clients = Clients(args.protocol)
    try:
        warm = Clients(args.protocol)
        await warm.open(deployment.servers, 10)
        await warm.close()
        await asyncio.sleep(1)
        before = deployment.rss()
        await clients.open(deployment.servers, args.clients)
        await asyncio.sleep(3)
        after = deployment.rss()
        return {
            "sockets": args.clients,
            "rss_before_mb": before / 1e6,
            "rss_after_mb": after / 1e6,
            "kb_per_socket": (after - before) / args.clients / 1e3,
        }
    finally:
        await clients.close()
        deployment.stop()


async def resume(args, workdir: Path) -> dict:
    args.processes = 1
    deployment = Deployment(args, "project", workdir)
    (server,) = deployment.servers
    clients = Clients(args.protocol, reconnect=True, retry=args.retry_interval)
    loop = asyncio.get_running_loop()
    try:
        await clients.open(deployment.servers, args.clients)
        await asyncio.to_thread(server.stop)
        printed = await asyncio.to_thread(
            deployment.manage, "shell", "-v0", "-c", CHANGE_WHILE_DOWN.format(changes=args.changes)
        )
        *_, head, final = printed.splitlines()
        epoch, version = head.split()
        head = (epoch, int(version))
        wire_bytes, frames, kinds = clients.wire_bytes, clients.frames, clients.kinds.copy()
        started = loop.time()
        answered = asyncio.create_task(first_answer(server.url))
        await asyncio.to_thread(server.start)
        deployment.watch_processes()
        answered_at = min([await answered, *clients.reconnected_at[:1]])
        peak_rss = deployment.rss()
        while clients.count_current(final, head) < args.clients:
            peak_rss = max(peak_rss, deployment.rss())
            await asyncio.sleep(0.01)
        current_at = max(clients.received_at)
        received, list_size = clients.wire_bytes - wire_bytes, len(final.encode())
        counts = await deployment.counts()
        return {
            "protocol": args.protocol,
            "users": args.users,
            "changes_while_down": args.changes,
            "start_to_answer_s": answered_at - started,
            "answer_to_all_reconnected_s": max(clients.reconnected_at) - answered_at,
            "answer_to_all_current_s": current_at - answered_at,
            "bytes_after_restart": received,
            "bytes_per_client": received / args.clients,
            "v1_list_bytes": list_size,
            "bytes_vs_clients_x_v1_list_pct": 100 * received / (args.clients * list_size),
            "frames_after_restart": clients.frames - frames,
            **{f"{kind}_frames": n for kind, n in sorted((clients.kinds - kinds).items())},
            "server_cpu_since_start_s": deployment.cpu_seconds(),
            "server_peak_rss_mb": peak_rss / 1e6,
            "wrong_lists": clients.count_wrong(json.loads(final), head),
            **({"broken_changes": clients.broken} if args.protocol == "v2" else {}),
            **{f"{name}_since_restart": count for name, count in sorted(counts.items())},
        }
    finally:
        await clients.close()
        deployment.stop()


async def first_answer(url: str) -> float:
    """Return when the server at ``url`` first answers HTTP, polling every 10 ms."""
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            try:
                await http.get(f"{url}/healthz")
                return asyncio.get_running_loop().time()
            except httpx.TransportError:
                await asyncio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--scenario", choices=["fanout", "burst", "memory", "resume"], default="fanout"
    )
    parser.add_argument("--protocol", choices=list(SUBPROTOCOLS), default="v1")
    parser.add_argument("--clients", "-n", type=int, default=500, help="N sockets (500)")
    parser.add_argument("--users", "-m", type=int, default=1000, help="M users prefilled (1000)")
    parser.add_argument("--creates", "-k", type=int, help="K creates (fanout 30, burst 200)")
    parser.add_argument(
        "--naive-creates", type=int, default=5, help="K for the naive consumer (5: it is slow)"
    )
    parser.add_argument(
        "--compare",
        help="fanout: run the project once per PROTOCOL:USERS pair, e.g. v1:1000,v2:1000,v2:100000",
    )
    parser.add_argument("--layer", choices=list(LAYER_ENV), default="memory")
    parser.add_argument(
        "--via", choices=["socket", "rest"], default="socket", help="burst: how creates are sent"
    )
    parser.add_argument(
        "--burst-seconds", type=float, default=1.0, help="burst: spread the K creates over this"
    )
    parser.add_argument(
        "--changes", type=int, default=10, help="resume: changes made while the server is down"
    )
    parser.add_argument(
        "--retry-interval", type=float, default=0.1, help="resume: seconds between reconnects"
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes (1)")
    parser.add_argument(
        "--consumers", default="project,floor,naive", help="fanout: which consumers, in order"
    )
    parser.add_argument(
        "--count", action="store_true", help="run the project as bench/counted.py, print counts"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="FLUSHED first")
    parser.add_argument("--database-url", help="a database the benchmark may empty (SQLite)")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if args.processes > 1 and args.layer == "memory":
        parser.error("several processes need a Redis layer: --layer core or pubsub")
    consumers = args.consumers.split(",")
    if unknown := set(consumers) - set(APPS):
        parser.error(
            f"unknown consumers: {', '.join(sorted(unknown))} (choose from {', '.join(APPS)})"
        )
    cases = [
        (consumer, args.protocol if consumer == "project" else "v1", args.users)
        for consumer in consumers
    ]
    if args.compare:
        try:
            pairs = [pair.split(":") for pair in args.compare.split(",")]
            cases = [("project", protocol, int(users)) for protocol, users in pairs]
        except ValueError:
            parser.error("--compare takes PROTOCOL:USERS pairs, e.g. v1:1000,v2:100000")
        if unknown := {protocol for _, protocol, _ in cases} - set(SUBPROTOCOLS):
            parser.error(f"unknown protocols in --compare: {', '.join(sorted(unknown))}")
    if args.scenario == "fanout" and not args.compare:
        if "floor" in consumers and args.processes > 1:
            parser.error("the floor runs in one process only (no channel layer): leave it out")
        if args.protocol != "v1" and set(consumers) - {"project"}:
            parser.error("the floor and the naive consumer speak v1 only: --consumers project")
    if args.scenario == "burst" and args.protocol != "v1":
        parser.error("the burst checks protocol v1's lists only")
    if args.scenario == "resume" and args.users < 3 * args.changes:
        parser.error("resume renames and deletes prefilled users: --users at least 3 x --changes")
    args.creates = args.creates or (200 if args.scenario == "burst" else 30)
    with tempfile.TemporaryDirectory() as folder:
        workdir = args.logs or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.scenario == "fanout":
            results = [asyncio.run(fanout(args, *case, workdir)) for case in cases]
        else:
            results = [asyncio.run(globals()[args.scenario](args, workdir))]
    command = " ".join(sys.argv[1:]) or "(defaults)"
    users = "per case" if args.compare else args.users
    print(f"# {command}  (N={args.clients} M={users} K={args.creates} "
          f"layer={args.layer} processes={args.processes}, {os.cpu_count()} cores)")  # fmt: skip
    for result in results:
        print(
            "  ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )
    if args.scenario != "fanout":
        return
    if args.compare:
        # Each later pair against each earlier one: v2's targets are v2:1000/v1:1000
        # below 1 and v2:100000/v2:1000 at most 1.5.
        p50 = {f"{r['protocol']}:{r['users']}": r["p50_ms"] for r in results}
        labels = list(p50)
        for j, slower in enumerate(labels):
            for faster in labels[:j]:
                print(f"p50 ratio {slower}/{faster}: {p50[slower] / p50[faster]:.2f}x")
        return
    p50 = {result["consumer"]: result["p50_ms"] for result in results}
    # project/floor: the target is at most 1.3x; naive/project: at least 4x.
    for slower, faster, digits in (("project", "floor", 2), ("naive", "project", 1)):
        if slower in p50 and faster in p50:
            print(f"p50 ratio {slower}/{faster}: {p50[slower] / p50[faster]:.{digits}f}x")


if __name__ == "__main__":
    main()
