#!/usr/bin/env python
"""
Write-path benchmark of the live list, against real server processes.

    .venv/bin/python bench/writes.py                      # every scenario, a few minutes
    .venv/bin/python bench/writes.py --scenario rest,floor --backend postgres
    .venv/bin/python bench/writes.py --scenario socket --writers 1,8 --processes 1 --seconds 8
    .venv/bin/python bench/writes.py --scenario screen
    .venv/bin/python bench/writes.py --scenario ceiling
    .venv/bin/python bench/writes.py --scenario bulkdelete --bulk-users 100000
    .venv/bin/python bench/writes.py --scenario rest --count   # + SQL statements per write

Every server is the deployment's uvicorn command (servers.py's ServerProcess,
as bench/fanout.py starts it), with DEBUG off, anonymous reads and writes allowed and
the per-client write limits lifted (servers.NO_WRITE_LIMITS). Backends
(--backend):
  postgres  a fresh database per deployment on --postgres-url's server
            (created, migrated, prefilled with --users users as bench/fanout.py
            seeds them, dropped at the end), and channels-redis' core layer on
            --redis-url (database 12, FLUSHED when each deployment starts);
  sqlite    a migrated temporary file and the in-memory layer (REDIS_URL
            unset): one process only.
All traffic goes to 127.0.0.1.

Scenarios (--scenario, comma-separated; all by default), each measurement
--seconds long (5) after two warm-up writes per writer:
  rest      W writers (--writers 1,8,32), each an httpx AsyncClient with one
            connection, POST /api/v1/users {"name", "email"} (both new each
            time), one after another; writer i on server process i mod P, for
            P in --processes (1,2; sqlite: 1). Reported: writes/s, p50/p99 of
            each write's latency, the servers' CPU per write and the client
            process's CPU share (near 100% of a core: the client is the limit,
            not the server). Meanwhile --observers v2 sockets (1) per process
            follow the list, as in a deployment with a live list, so every
            write also costs its change set's read and fan-out, and the
            publish goes through the process's relay (a process that never
            had a socket publishes from the writer's own thread instead:
            --observers 0 with --scenario rest alone measures that).
  socket    the same writers as v2 sockets (subprotocol users.v2): each sends
            {"action": "create", "name", "email", "request_id": <uuid4 hex>}
            and waits for its ack before the next; each writer also receives
            the changes frames of every write. Latency: send to ack.
  floor     bench/writefloor: a bare DRF ListCreateAPIView (ModelSerializer,
            the User fields; no middleware, authentication, throttle, version
            row, publish or channels) under the same uvicorn command, on a
            database of its own, with the same writers and processes as rest,
            measured in turn with it. Ratio lines follow the table:
            project/floor p50 at the fewest writers on one process, and
            throughput at the most writers on two; the project's
            two-process/one-process throughput.
  screen    write-to-screen: --screen-clients v2 clients (1,000) spread over
            --screen-processes server processes (2), run in --client-processes
            separate client processes (2), since 1,000 sockets can saturate one
            Python process; --screen-rate REST creates a second (20) for
            --screen-seconds (10), each sent at its time (open loop). For every
            (create, client) pair: from the create's 201 arriving here to that
            client receiving the changes frame carrying the user (negative when
            the frame came first); p50/p99 over all pairs, the pairs never
            delivered, and each client process's CPU share.
  ceiling   the version row's ceiling: --ceiling-writers REST writers (64) on
            --ceiling-processes server processes (4), as rest.
  bulkdelete  prefill --bulk-users (100,000; bulk_create in manage.py shell),
            connect a protocol v1 client to one server process, time
            User.objects.all().delete() in manage.py shell: delete() itself
            (delete_s) and its commit with the on_commit callbacks (commit_s),
            its SQL statements, the shell's and the database backend's CPU;
            then when the v1 client got its next list (from delete()
            returning), and that it ends on the empty list, as REST does.
            --bulk-probe S sends a REST create S seconds after the shell
            starts (then deletes it): how long a write waits for the delete.
            The delete is the one unbounded measurement (--bulk-timeout).
screen, ceiling and bulkdelete run on postgres only.

--count runs the project as bench/counted.py and adds SQL statements, list
reads and publishes per write, summed over the server processes.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.fanout import SEED, client_cpu_seconds, server_counts  # noqa: E402
from bench.v2list import Decoder, HeldList  # noqa: E402
from servers import NO_WRITE_LIMITS, ServerProcess, free_port  # noqa: E402

SCENARIOS = ["rest", "socket", "floor", "screen", "ceiling", "bulkdelete"]
BACKENDS = ["postgres", "sqlite"]
APPS = {
    "project": "usersite.asgi:application",
    "counted": "bench.counted:application",
    "floor": "bench.writefloor.asgi:application",
}
FLOOR_SETTINGS = "bench.writefloor.settings"
# Environment variables of this shell that must not reach the servers.
NOT_PASSED = {"DJANGO_SETTINGS_MODULE", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"}

# The floor's M users, as bench/fanout.py's SEED makes the project's.
FLOOR_SEED = """
from bench.writefloor.models import User
User.objects.bulk_create(
    User(name=f"Bench user {{i}}", email=f"user{{i}}@example.org") for i in range({users})
)
"""

# Runs in manage.py shell: the bulk delete in a transaction of its own (as
# QuerySet.delete makes one), its SQL statements counted, the shell's and the
# database server's CPU seconds (PostgreSQL: this connection's backend
# process), and when it started, when delete() returned (before the commit)
# and when the commit and its on_commit callbacks were done (time.monotonic is
# the machine's clock, the same in every process).
BULK_DELETE = """
import resource, time
import psutil
from django.db import connection, transaction
from users.models import User
statements = [0]
def count(execute, sql, params, many, context):
    statements[0] += 1
    return execute(sql, params, many, context)
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
connection.ensure_connection()
backend = None
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
def database_cpu():
    return sum(backend.cpu_times()[:2]) if backend else float("nan")
shell_cpu, database_cpu_before = cpu(), database_cpu()
started = time.monotonic()
with connection.execute_wrapper(count), transaction.atomic():
    deleted, _ = User.objects.all().delete()
    deleted_at = time.monotonic()
committed_at = time.monotonic()
print(deleted, statements[0], started, deleted_at, committed_at,
      cpu() - shell_cpu, database_cpu() - database_cpu_before)
"""

# How users.live.snapshots.dump encodes protocol v2's list frames: a writer skips
# them without decoding (acks and errors are encoded otherwise, and decoded).
LIST_FRAMES = ('{"type":"snapshot"', '{"type":"changes"')
SCREEN_PREFIX = "Screen "  # names of the screen scenario's creates


def new_user(tag: str) -> dict:
    key = uuid.uuid4().hex
    return {"name": f"{tag} {key[:12]}", "email": f"{key}@example.org"}


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- Databases and servers -----------------------------------------------------


@contextmanager
def fresh_database(args, backend: str, label: str):
    """A new, empty database, dropped at the end (tests/e2e/conftest.py's _own_database)."""
    if backend == "sqlite":
        yield f"sqlite:///{args.workdir / f'{label}.sqlite3'}"
        return
    name = f"usersite_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(args.postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Database:
    """A fresh database for the project or the floor, migrated and prefilled; its servers' env."""

    def __init__(self, stack: ExitStack, args, backend: str, app: str, label: str, users: int):
        self.args, self.backend, self.app, self.label = args, backend, app, label
        url = stack.enter_context(fresh_database(args, backend, label))
        redis_url = args.redis_url if backend == "postgres" and app == "project" else ""
        self.env = {
            **{name: value for name, value in os.environ.items() if name not in NOT_PASSED},
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "DEBUG": "false",
            "HTTPS": "false",
            "SECRET_KEY": "benchmark-only",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "USERS_ANONYMOUS_READS": "true",
            "USERS_ANONYMOUS_WRITES": "true",
            **NO_WRITE_LIMITS,
            "LOG_LEVEL": "WARNING",
        }
        if app == "floor":
            self.env["DJANGO_SETTINGS_MODULE"] = FLOOR_SETTINGS
        if redis_url:
            redis.Redis.from_url(redis_url).flushdb()
        self.manage("migrate", "--noinput", "-v0")
        started = time.perf_counter()
        seed = FLOOR_SEED if app == "floor" else SEED
        self.manage("shell", "-v0", "-c", seed.format(users=users))
        self.seed_seconds = time.perf_counter() - started

    def manage(self, *command: str, timeout: float | None = None) -> str:
        """Run a manage.py command on this database; return what it printed."""
        return subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True, timeout=timeout,
        ).stdout  # fmt: skip


class Servers:
    """``count`` server processes of a database's application, on the deployment's command."""

    def __init__(self, database: Database, count: int):
        args = database.args
        self.counted = database.app == "project" and args.count
        app = APPS["counted" if self.counted else database.app]
        self.servers = []
        try:
            for index in range(count):
                log = args.workdir / f"{database.label}-{count}p-{index}.log"
                server = ServerProcess(
                    sys.executable, "uvicorn", free_port(), database.env, log, app=app
                )
                self.servers.append(server)
                server.start()
        except BaseException:
            self.stop()
            raise
        self.processes = [psutil.Process(server.process.pid) for server in self.servers]
        self.urls = [server.url for server in self.servers]
        self.ws_urls = [server.ws_url for server in self.servers]

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def cpu_seconds(self, used: int | None = None) -> float:
        return sum(sum(process.cpu_times()[:2]) for process in self.processes[:used])

    async def counts(self) -> Counter:
        """bench/counted.py's counters, summed over the servers (empty without --count)."""
        return await server_counts(self.urls) if self.counted else Counter()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


# --- Writers -------------------------------------------------------------------


class RestWriter:
    """One writer through REST: an httpx client of its own, with one connection."""

    tag = "Writer"

    def __init__(self, url: str, ws_url: str):
        self.url = url

    async def __aenter__(self) -> "RestWriter":
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()

    async def write(self) -> str | None:
        """Create a user; return None once it is created, else what went wrong."""
        response = await self.http.post("/api/v1/users", json=new_user(self.tag))
        return None if response.status_code == 201 else f"{response.status_code} {response.text}"


class V2Socket:
    """
    A protocol v2 client. As a writer it sends acknowledged creates and skips
    the list frames; with ``hold`` it follows the list (bench/v2list.py) and
    counts changes frames that did not start at the version it held.
    """

    tag = "Socket writer"

    def __init__(self, url: str, ws_url: str, hold: bool = False):
        self.ws_url, self.hold = ws_url, hold
        self.decode, self.held, self.broken = Decoder(), HeldList(), 0
        self.pending: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> "V2Socket":
        self.has_list = asyncio.Event()
        self.ws = await connect(
            self.ws_url, subprotocols=["users.v2"], max_size=None, open_timeout=60
        )
        self.reader = asyncio.create_task(self.read())
        await asyncio.wait_for(self.has_list.wait(), 60)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        self.reader.cancel()

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.startswith(LIST_FRAMES):
                    if self.hold:
                        self.broken += not self.held.apply(self.decode(frame))
                    self.has_list.set()
                    continue
                message = json.loads(frame)
                future = self.pending.pop(message.get("request_id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the socket closed"))

    async def write(self) -> str | None:
        """Create a user and wait for its ack; return None then, else the frame that came."""
        if self.reader.done():
            raise ConnectionError("the socket closed")
        request_id = uuid.uuid4().hex
        self.pending[request_id] = future = asyncio.get_running_loop().create_future()
        command = {"action": "create", **new_user(self.tag), "request_id": request_id}
        await self.ws.send(json.dumps(command))
        message = await asyncio.wait_for(future, 60)
        return None if message.get("type") == "ack" else json.dumps(message)


async def measure(args, scenario: str, servers: Servers, database: Database, used: int,
                  writer_class, writers: int, observers: int = 0) -> dict:  # fmt: skip
    """``writers`` writers on the first ``used`` servers, writing for --seconds."""
    async with AsyncExitStack() as stack:
        watching = [
            await stack.enter_async_context(V2Socket("", servers.ws_urls[p], hold=True))
            for p in range(used)
            for _ in range(observers)
        ]
        team = [
            await stack.enter_async_context(
                writer_class(servers.urls[i % used], servers.ws_urls[i % used])
            )
            for i in range(writers)
        ]
        for _ in range(2):  # warm-up: connections made, code paths run once
            await asyncio.gather(*(writer.write() for writer in team))
        latencies, failures = [], []
        counts = await servers.counts()
        cpu, client_cpu = servers.cpu_seconds(used), client_cpu_seconds()
        started = time.perf_counter()
        deadline = started + args.seconds

        async def run(writer) -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    problem = await writer.write()
                except Exception as exc:  # a writer that broke stops; the others go on
                    failures.append(repr(exc))
                    return
                if problem is None:
                    latencies.append(time.perf_counter() - sent)
                else:
                    failures.append(problem)

        await asyncio.gather(*(run(writer) for writer in team))
        elapsed = time.perf_counter() - started
        cpu, client_cpu = servers.cpu_seconds(used) - cpu, client_cpu_seconds() - client_cpu
        counts = await servers.counts() - counts
        broken = sum(observer.broken for observer in watching)
    writes = len(latencies)
    result = {
        "scenario": scenario,
        "backend": database.backend,
        "app": database.app,
        "processes": used,
        "writers": writers,
        "writes": writes,
        "writes_per_s": writes / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else float("nan"),
        "server_cpu_ms_per_write": 1000 * cpu / writes if writes else float("nan"),
        "server_cpu_cores": cpu / elapsed,
        "client_cpu_pct": 100 * client_cpu / elapsed,
        "failures": len(failures),
        **({"first_failure": failures[0][:200]} if failures else {}),
        **({"broken_changes": broken} if watching else {}),
        **{f"{name}_per_write": n / writes for name, n in sorted(counts.items()) if writes},
    }
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


def format_pair(key, value) -> str:
    return f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"


async def grid(args, backend: str) -> list[dict]:
    """rest, socket and floor: every writer count on every process count, in turn."""
    selected = set(args.scenario)
    processes = [1] if backend == "sqlite" else args.processes
    results = []
    with ExitStack() as stack:
        project = floor = None
        if selected & {"rest", "socket"}:
            project = Database(stack, args, backend, "project", f"{backend}_project", args.users)
        if "floor" in selected:
            floor = Database(stack, args, backend, "floor", f"{backend}_floor", args.users)
        for count in processes:
            with ExitStack() as running:
                ours = running.enter_context(Servers(project, count)) if project else None
                theirs = running.enter_context(Servers(floor, count)) if floor else None
                for writers in args.writers:
                    if "rest" in selected:
                        results.append(await measure(
                            args, "rest", ours, project, count, RestWriter, writers, args.observers
                        ))  # fmt: skip
                    if "socket" in selected:
                        results.append(await measure(
                            args, "socket", ours, project, count, V2Socket, writers
                        ))  # fmt: skip
                    if "floor" in selected:
                        results.append(await measure(
                            args, "floor", theirs, floor, count, RestWriter, writers
                        ))  # fmt: skip
    return results


async def ceiling(args) -> dict:
    with ExitStack() as stack:
        database = Database(stack, args, "postgres", "project", "ceiling", args.users)
        with Servers(database, args.ceiling_processes) as servers:
            return await measure(
                args, "ceiling", servers, database, args.ceiling_processes, RestWriter,
                args.ceiling_writers, args.observers,
            )  # fmt: skip


# --- Write-to-screen -----------------------------------------------------------


def screen_clients(ws_urls: list[str], indices: list[int], pipe) -> None:
    """A client process of the screen scenario (multiprocessing's target)."""
    asyncio.run(ScreenClients(ws_urls, indices).run(pipe))


class ScreenClients:
    """
    v2 clients in one process, each holding the list (bench/v2list.py: each
    distinct frame decoded once), noting when each created user reached each
    client.
    """

    def __init__(self, ws_urls: list[str], indices: list[int]):
        self.ws_urls, self.indices = ws_urls, indices
        self.decode = Decoder()
        self.arrivals = defaultdict(list)  # user name -> when each client got it
        self.broken = self.closed = self.frames = 0

    async def run(self, pipe) -> None:
        held = [HeldList() for _ in self.indices]
        sockets, readers = [], []
        # 20 at a time, each batch once it holds its snapshots, as bench/fanout.py connects.
        for start in range(0, len(self.indices), 20):
            batch = range(start, min(start + 20, len(self.indices)))
            opened = await asyncio.gather(*(
                connect(
                    self.ws_urls[self.indices[i] % len(self.ws_urls)],
                    subprotocols=["users.v2"], max_size=None, open_timeout=120,
                )
                for i in batch
            ))  # fmt: skip
            for i, ws in zip(batch, opened, strict=True):
                sockets.append(ws)
                readers.append(asyncio.create_task(self.read(ws, held[i])))
            while not all(held[i].version is not None for i in batch):
                await asyncio.sleep(0.01)
        pipe.send(len(sockets))
        await asyncio.to_thread(pipe.recv)  # start
        cpu, started = client_cpu_seconds(), time.monotonic()
        names, timeout = await asyncio.to_thread(pipe.recv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            len(self.arrivals[name]) < len(sockets) for name in names
        ):
            await asyncio.sleep(0.01)
        wall, cpu = time.monotonic() - started, client_cpu_seconds() - cpu
        pipe.send(
            {
                "arrivals": {name: self.arrivals[name] for name in names},
                "cpu_s": cpu,
                "wall_s": wall,
                "broken": self.broken,
                "closed": self.closed,
                "frames": self.frames,
            }
        )
        await asyncio.gather(*(ws.close() for ws in sockets))
        for reader in readers:
            reader.cancel()

    async def read(self, ws, held: HeldList) -> None:
        try:
            async for frame in ws:
                now = time.monotonic()
                self.frames += 1
                message = self.decode(frame)
                if message["type"] == "changes":
                    # Shared by every client sent this text: worked out once.
                    names = message.get("screen_names")
                    if names is None:
                        names = message["screen_names"] = [
                            user["name"]
                            for user in message["upserted"]
                            if user["name"].startswith(SCREEN_PREFIX)
                        ]
                    for name in names:
                        self.arrivals[name].append(now)
                self.broken += not held.apply(message)
        except ConnectionClosed:
            pass
        self.closed += 1


async def screen(args) -> dict:
    with ExitStack() as stack:
        database = Database(stack, args, "postgres", "project", "screen", args.users)
        servers = stack.enter_context(Servers(database, args.screen_processes))
        context = multiprocessing.get_context("spawn")
        pipes, children = [], []
        share = args.screen_clients / args.client_processes
        try:
            for c in range(args.client_processes):
                ours, theirs = context.Pipe()
                indices = list(range(round(c * share), round((c + 1) * share)))
                child = context.Process(
                    target=screen_clients, args=(servers.ws_urls, indices, theirs), daemon=True
                )
                child.start()
                pipes.append(ours)
                children.append(child)
            connected = [await asyncio.to_thread(receive, pipe, 300) for pipe in pipes]
            clients = sum(connected)
            for pipe in pipes:
                pipe.send("start")
            cpu, client_cpu = servers.cpu_seconds(), client_cpu_seconds()
            started = time.monotonic()
            answered, create_latencies, failures = await screen_creates(args, servers.urls)
            sent_within = time.monotonic() - started
            for pipe in pipes:
                pipe.send((list(answered), args.screen_timeout))
            reports = [await asyncio.to_thread(receive, pipe, args.screen_timeout + 60)
                       for pipe in pipes]  # fmt: skip
            cpu, client_cpu = servers.cpu_seconds() - cpu, client_cpu_seconds() - client_cpu
            elapsed = time.monotonic() - started
        finally:
            for child in children:
                child.join(timeout=30)
                if child.is_alive():
                    child.terminate()
    delays = [
        arrival - answered[name]
        for report in reports
        for name, arrivals in report["arrivals"].items()
        for arrival in arrivals
    ]
    pairs = len(answered) * clients
    result = {
        "scenario": "screen",
        "clients": clients,
        "server_processes": args.screen_processes,
        "client_processes": args.client_processes,
        "creates": len(answered),
        "create_failures": failures,
        "sent_within_s": sent_within,
        "rest_p50_ms": 1000 * statistics.median(create_latencies),
        "pairs": pairs,
        "missing_pairs": pairs - len(delays),
        "p50_ms": 1000 * statistics.median(delays) if delays else float("nan"),
        "p99_ms": 1000 * percentile(delays, 0.99) if delays else float("nan"),
        "max_ms": 1000 * max(delays) if delays else float("nan"),
        "frame_before_201": sum(delay < 0 for delay in delays),
        "client_cpu_pct": [round(100 * r["cpu_s"] / r["wall_s"]) for r in reports],
        "writer_cpu_pct": 100 * client_cpu / elapsed,
        "server_cpu_cores": cpu / elapsed,
        "frames": sum(r["frames"] for r in reports),
        "broken_changes": sum(r["broken"] for r in reports),
        "closed_sockets": sum(r["closed"] for r in reports),
    }
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


def receive(pipe, timeout: float):
    if not pipe.poll(timeout):
        raise TimeoutError(f"no word from a client process in {timeout} s")
    return pipe.recv()


async def screen_creates(args, urls: list[str]) -> tuple[dict, list, int]:
    """--screen-rate REST creates a second, each at its time; return when each 201 arrived."""
    count = round(args.screen_rate * args.screen_seconds)
    answered, latencies, failures = {}, [], 0
    started = time.monotonic() + 0.1

    async def create(k: int, http: httpx.AsyncClient) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, started + k / args.screen_rate - time.monotonic()))
        name = f"{SCREEN_PREFIX}{k} {uuid.uuid4().hex[:8]}"
        sent = time.monotonic()
        response = await http.post(f"{urls[k % len(urls)]}/api/v1/users", json={"name": name})
        arrived = time.monotonic()
        if response.status_code != 201:
            failures += 1
            return
        answered[name] = arrived
        latencies.append(arrived - sent)

    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(create(k, http) for k in range(count)))
    return answered, latencies, failures


# --- Bulk delete ---------------------------------------------------------------


async def bulk_delete(args) -> dict:
    with ExitStack() as stack:
        database = Database(stack, args, "postgres", "project", "bulkdelete", args.bulk_users)
        servers = stack.enter_context(Servers(database, 1))
        url = servers.urls[0]
        frames = []  # (when, the empty list?) of every list after the first
        async with connect(servers.ws_urls[0], max_size=None, open_timeout=120) as ws:
            first = await asyncio.wait_for(ws.recv(), 120)
            held_before = len(json.loads(first))
            del first

            async def read() -> None:
                async for frame in ws:
                    frames.append((time.monotonic(), frame == "[]"))

            reader = asyncio.create_task(read())
            cpu = servers.cpu_seconds()
            probe = asyncio.create_task(bulk_probe(args, url)) if args.bulk_probe else None
            printed = await asyncio.to_thread(
                database.manage, "shell", "-v0", "-c", BULK_DELETE, timeout=args.bulk_timeout
            )
            fields = printed.split()[-7:]
            deleted, statements = int(fields[0]), int(fields[1])
            started, deleted_at, committed_at, shell_cpu, database_cpu = map(float, fields[2:])
            probed = await probe if probe else None
            deadline = time.monotonic() + 60
            while not (frames and frames[-1][1]) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # anything after the empty list would show now
            cpu = servers.cpu_seconds() - cpu
            reader.cancel()
        async with httpx.AsyncClient(timeout=60) as http:
            left = (await http.get(f"{url}/api/v1/users")).json()["users"]
    after_commit = [when for when, _ in frames if when >= deleted_at]
    result = {
        "scenario": "bulkdelete",
        "users": args.bulk_users,
        "seed_s": database.seed_seconds,
        "v1_client_held": held_before,
        "deleted": deleted,
        "statements": statements,
        "delete_s": deleted_at - started,
        "commit_s": committed_at - deleted_at,
        "shell_cpu_s": shell_cpu,
        "database_cpu_s": database_cpu,
        "server_cpu_s": cpu,
        "v1_list_after_delete_ms": (
            1000 * (after_commit[0] - deleted_at) if after_commit else float("nan")
        ),
        "v1_lists_after": len(frames),
        "v1_ends_empty": bool(frames) and frames[-1][1],
        "rest_users_left": len(left),
    }
    if probed:
        sent, answered = probed
        result["probe_sent_after_start_s"] = sent - started
        result["probe_answered_after_commit_ms"] = 1000 * (answered - deleted_at)
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


async def bulk_probe(args, url: str) -> tuple[float, float]:
    """
    A REST create sent --bulk-probe seconds after the shell starts, during the
    delete, and deleted again once answered: return when it was sent and answered.
    """
    await asyncio.sleep(args.bulk_probe)
    async with httpx.AsyncClient(base_url=url, timeout=args.bulk_timeout) as http:
        sent = time.monotonic()
        response = await http.post("/api/v1/users", json={"name": "Probe"})
        answered = time.monotonic()
        response.raise_for_status()
        (await http.delete(f"/api/v1/users/{response.json()['id']}")).raise_for_status()
    return sent, answered


# --- The run -------------------------------------------------------------------


async def run(args) -> list[dict]:
    """Every scenario asked for; one that fails is reported, and the others still run."""
    jobs = []
    for backend in args.backend:
        if set(args.scenario) & {"rest", "socket", "floor"}:
            jobs.append((f"{backend} grid", lambda backend=backend: grid(args, backend)))
    if "postgres" not in args.backend:
        if skipped := [
            name for name in ("ceiling", "screen", "bulkdelete") if name in args.scenario
        ]:
            print(f"skipped, postgres only: {', '.join(skipped)}", flush=True)
    else:
        jobs += [(name, lambda job=job: job(args)) for name, job in (
            ("ceiling", ceiling), ("screen", screen), ("bulkdelete", bulk_delete)
        ) if name in args.scenario]  # fmt: skip
    results = []
    for name, job in jobs:
        try:
            outcome = await job()
        except Exception as exc:
            print(f"{name} failed: {exc!r}", flush=True)
            results.append({"scenario": name, "failed": repr(exc)[:300]})
            continue
        results += outcome if isinstance(outcome, list) else [outcome]
    return results


COLUMNS = [
    ("scenario", "scenario", "{}"),
    ("backend", "backend", "{}"),
    ("app", "app", "{}"),
    ("processes", "P", "{}"),
    ("writers", "W", "{}"),
    ("writes", "writes", "{}"),
    ("writes_per_s", "writes/s", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("server_cpu_ms_per_write", "srv CPU ms/w", "{:.2f}"),
    ("server_cpu_cores", "srv cores", "{:.2f}"),
    ("client_cpu_pct", "client CPU %", "{:.0f}"),
    ("failures", "fail", "{}"),
]
COUNT_COLUMNS = [
    ("queries_per_write", "SQL/w", "{:.1f}"),
    ("reads_per_write", "reads/w", "{:.2f}"),
    ("publishes_per_write", "pub/w", "{:.2f}"),
]


def table(results: list[dict], count: bool) -> list[str]:
    rows = [r for r in results if "writers" in r]
    if not rows:
        return []
    columns = COLUMNS + (COUNT_COLUMNS if count else [])
    cells = [[title for _, title, _ in columns]]
    cells += [[form.format(r[key]) if key in r else "-" for key, _, form in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in cells]  # fmt: skip


def ratios(args, results: list[dict]) -> list[str]:
    """project/floor and two/one-process lines, from what this run measured."""
    found = {
        (r["scenario"], r["backend"], r["processes"], r["writers"]): r
        for r in results
        if "writers" in r
    }
    fewest, most = min(args.writers), max(args.writers)
    lines = []
    for backend in args.backend:
        for scenario in ("rest", "socket"):
            floor = found.get(("floor", backend, 1, fewest))
            ours = found.get((scenario, backend, 1, fewest))
            if floor and ours:
                lines.append(
                    f"{backend}: {scenario}/floor p50, {fewest} writer(s) on 1 process: "
                    f"{ours['p50_ms'] / floor['p50_ms']:.2f}x "
                    f"({ours['p50_ms']:.2f} / {floor['p50_ms']:.2f} ms)"
                )
        for scenario in ("rest", "socket"):
            floor = found.get(("floor", backend, 2, most))
            ours = found.get((scenario, backend, 2, most))
            if floor and ours:
                lines.append(
                    f"{backend}: {scenario}/floor throughput, {most} writers on 2 processes: "
                    f"{ours['writes_per_s'] / floor['writes_per_s']:.2f}x "
                    f"({ours['writes_per_s']:.1f} / {floor['writes_per_s']:.1f} writes/s)"
                )
        for scenario in ("rest", "socket", "floor"):
            one = found.get((scenario, backend, 1, most))
            two = found.get((scenario, backend, 2, most))
            if one and two:
                lines.append(
                    f"{backend}: {scenario} throughput 2 processes / 1 process, {most} writers: "
                    f"{two['writes_per_s'] / one['writes_per_s']:.2f}x "
                    f"({two['writes_per_s']:.1f} / {one['writes_per_s']:.1f} writes/s)"
                )
    return lines


def commit() -> str:
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return described.stdout.strip() or "unknown"


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def run_and_describe(parser, args, run, details: str = "") -> list:
    """
    Run a benchmark's ``run(args)`` in a work folder, on loopback services only,
    then print its command line and the machine's state around it.
    """
    for option in ("postgres_url", "redis_url"):
        if urlsplit(getattr(args, option)).hostname not in {"127.0.0.1", "localhost", "::1"}:
            parser.error(f"--{option.replace('_', '-')}: loopback only")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        args.workdir = args.logs or Path(folder)
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(run(args))
    load_after = os.getloadavg()
    print()
    print(f"# .venv/bin/python bench/{Path(sys.argv[0]).name} {shlex.join(sys.argv[1:])}".rstrip())
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, commit {commit()}; {os.cpu_count()} cores; "
        f"load {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end"
        + (f"; {details}" if details else "")
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (all)",
    )
    parser.add_argument(
        "--backend", default=",".join(BACKENDS), help="comma-separated: postgres, sqlite (both)"
    )
    parser.add_argument("--writers", type=numbers, default=[1, 8, 32], help="(1,8,32)")
    parser.add_argument("--processes", type=numbers, default=[1, 2], help="(1,2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    parser.add_argument("--users", type=int, default=1000, help="users prefilled (1000)")
    parser.add_argument(
        "--observers",
        type=int,
        default=1,
        help="rest, ceiling: v2 sockets per process following the list (1)",
    )
    parser.add_argument("--screen-clients", type=int, default=1000, help="(1000)")
    parser.add_argument("--screen-processes", type=int, default=2, help="server processes (2)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="screen: processes the clients run in (2)"
    )
    parser.add_argument("--screen-rate", type=float, default=20.0, help="creates a second (20)")
    parser.add_argument("--screen-seconds", type=float, default=10.0, help="(10)")
    parser.add_argument(
        "--screen-timeout",
        type=float,
        default=30.0,
        help="screen: seconds to wait for the last frames (30)",
    )
    parser.add_argument("--ceiling-writers", type=int, default=64, help="(64)")
    parser.add_argument("--ceiling-processes", type=int, default=4, help="(4)")
    parser.add_argument("--bulk-users", type=int, default=100_000, help="(100000)")
    parser.add_argument(
        "--bulk-timeout",
        type=float,
        default=1800.0,
        help="bulkdelete: seconds the delete may take before it is killed (1800)",
    )
    parser.add_argument(
        "--bulk-probe",
        type=float,
        metavar="SECONDS",
        help="bulkdelete: send a REST create this long after the delete's shell starts "
        "(and delete it once answered): how long a write waits for the delete",
    )
    parser.add_argument(
        "--count",
        action="store_true",
        help="run the project as bench/counted.py: statements per write",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a server where the benchmark creates and drops its databases",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/12",
        help="FLUSHED by every deployment (redis://127.0.0.1:6379/12)",
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    args.scenario = args.scenario.split(",")
    args.backend = args.backend.split(",")
    if unknown := set(args.scenario) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if unknown := set(args.backend) - set(BACKENDS):
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    results = run_and_describe(
        parser,
        args,
        run,
        f"{args.seconds:g} s per measurement, {args.users} users prefilled, "
        f"{args.observers} observer(s) per process for rest",
    )
    for line in table(results, args.count) + ratios(args, results):
        print(line)
    for result in results:
        if "writers" not in result:
            print(" ".join(format_pair(k, v) for k, v in result.items()))


if __name__ == "__main__":
    main()
