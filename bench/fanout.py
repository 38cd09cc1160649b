#!/usr/bin/env python
"""
Fan-out benchmark of the live list, against real server processes.

    .venv/bin/python bench/fanout.py                  # fan-out: project, floor, naive
    .venv/bin/python bench/fanout.py --scenario burst         # 200 creates in 1 s, 500 clients
    .venv/bin/python bench/fanout.py --scenario memory --clients 5000
    .venv/bin/python bench/fanout.py --layer core --processes 2 --consumers project  # Redis

fanout: start the server, prefill M users, connect N clients, make K creates one
after another through REST, and report p50/p99 of the time until every client
holds the new list, deliveries per second and the server's CPU seconds; for
each consumer, one after another, each on the same uvicorn command
(servers.py):
  project  the project (usersite.asgi);
  floor    bench/floor.py, a bare ASGI application (no Django) that keeps the
           sockets and sends one pre-encoded list of the same size to all of
           them on each create: what the server stack alone can do. It has no
           database and no channel layer (--layer does not apply to it) and
           runs in one process only;
  naive    bench/naive.py, written as the Channels tutorial teaches.
Ratio lines follow: project/floor (the issue's target: at most 1.3x at N=500,
M=1,000) and naive/project (at least 4x).
burst: K creates sent within --burst-seconds (1), evenly spaced and without
waiting for answers, by 10 of the N clients over their sockets (or through
REST with --via rest); time until every client holds the final list, and
whether any client ever received an older list.
memory: resident memory per idle socket on one server process.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

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


class Deployment:
    """
    Server processes on a fresh, prefilled database with the chosen channel layer.

    The floor has neither: it makes its M users itself (FLOOR_USERS).
    """

    def __init__(self, args, consumer: str, workdir: Path):
        database_url = args.database_url or f"sqlite:///{workdir / f'{consumer}.sqlite3'}"
        self.env = {
            **os.environ,
            **LAYER_ENV[args.layer],
            "FLOOR_USERS": str(args.users),
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url if args.layer != "memory" else "",
            "DEBUG": "false",
            "HTTPS": "false",
            "SECRET_KEY": "benchmark-only",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "USERS_ANONYMOUS_WRITES": "true",
            **NO_WRITE_LIMITS,
            "LOG_LEVEL": "WARNING",
        }
        if consumer != "floor":
            if args.layer != "memory":
                redis.Redis.from_url(args.redis_url).flushdb()
            self.manage("migrate", "--noinput", "-v0")
            # bench/floor.py starts with the same users (ids 1 to M).
            self.manage(
                "shell",
                "-c",
                "from users.models import User; User.objects.all().delete(); "
                "User.objects.bulk_create(User(name=f'Bench user {i}', "
                "email=f'user{i}@example.org') "
                f"for i in range({args.users}))",
            )
        self.servers = [
            ServerProcess(
                sys.executable, "uvicorn", free_port(), self.env,
                workdir / f"{consumer}-{index}.log", app=APPS[consumer],
            ).start()
            for index in range(args.processes)
        ]  # fmt: skip
        self.processes = [psutil.Process(server.process.pid) for server in self.servers]

    def manage(self, *command: str) -> None:
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, check=True)

    def cpu_seconds(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clients:
    """N sockets spread over the servers, each recording what it received."""

    def __init__(self):
        self.sockets, self.latest, self.frames, self.went_back = [], [], 0, 0
        self.target, self.missing, self.all_have_it = None, 0, asyncio.Event()

    async def open(self, servers, count: int) -> None:
        # Small batches: channels-redis' connection pool refuses a storm of
        # group_add calls from the naive consumer ("Too many connections").
        for start in range(0, count, 20):
            batch = range(start, min(start + 20, count))
            self.sockets += await asyncio.gather(
                *(connect(servers[i % len(servers)].ws_url, max_size=None) for i in batch)
            )
        self.latest = [""] * count
        self.received_at = [0.0] * count
        self.readers = [asyncio.create_task(self.read(i)) for i in range(count)]
        while any(not frame for frame in self.latest):
            await asyncio.sleep(0.05)

    async def read(self, index: int) -> None:
        async for frame in self.sockets[index]:
            self.frames += 1
            # The benchmarks only add users, so an older list is a shorter one;
            # comparing lengths keeps this client's CPU low (see the module docstring).
            self.went_back += len(frame) < len(self.latest[index])
            if self.target and self.target in frame and self.target not in self.latest[index]:
                self.missing -= 1
                if not self.missing:
                    self.all_have_it.set()
            self.latest[index] = frame
            self.received_at[index] = asyncio.get_running_loop().time()

    def expect(self, marker: str) -> None:
        self.target, self.missing = marker, len(self.sockets)
        self.all_have_it.clear()

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets))


async def fanout(args, consumer: str, workdir: Path) -> dict:
    deployment = Deployment(args, consumer, workdir)
    clients = Clients()
    try:
        await clients.open(deployment.servers, args.clients)
        latencies = []
        cpu, client_cpu, frames = deployment.cpu_seconds(), client_cpu_seconds(), clients.frames
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=60) as http:
            for k in range(args.naive_creates if consumer == "naive" else args.creates):
                name = f"Fan-out {uuid.uuid4().hex}"
                clients.expect(name)
                sent = time.perf_counter()
                server = deployment.servers[k % len(deployment.servers)]
                response = await http.post(f"{server.url}/api/v1/users", json={"name": name})
                response.raise_for_status()
                await asyncio.wait_for(clients.all_have_it.wait(), 120)
                latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "consumer": consumer,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "deliveries_per_s": (clients.frames - frames) / elapsed,
            "server_cpu_s": deployment.cpu_seconds() - cpu,
            "client_cpu_share": (client_cpu_seconds() - client_cpu) / elapsed,
            "went_back": clients.went_back,
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
    clients = Clients()
    try:
        warm = Clients()
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scenario", choices=["fanout", "burst", "memory"], default="fanout")
    parser.add_argument("--clients", "-n", type=int, default=500, help="N sockets (500)")
    parser.add_argument("--users", "-m", type=int, default=1000, help="M users prefilled (1000)")
    parser.add_argument("--creates", "-k", type=int, help="K creates (fanout 30, burst 200)")
    parser.add_argument(
        "--naive-creates", type=int, default=5, help="K for the naive consumer (5: it is slow)"
    )
    parser.add_argument("--layer", choices=list(LAYER_ENV), default="memory")
    parser.add_argument(
        "--via", choices=["socket", "rest"], default="socket", help="burst: how creates are sent"
    )
    parser.add_argument(
        "--burst-seconds", type=float, default=1.0, help="burst: spread the K creates over this"
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes (1)")
    parser.add_argument(
        "--consumers", default="project,floor,naive", help="fanout: which consumers, in order"
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
    if args.scenario == "fanout" and "floor" in consumers and args.processes > 1:
        parser.error("the floor runs in one process only (it has no channel layer): leave it out")
    args.creates = args.creates or (200 if args.scenario == "burst" else 30)
    with tempfile.TemporaryDirectory() as folder:
        workdir = args.logs or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.scenario == "fanout":
            results = [asyncio.run(fanout(args, c, workdir)) for c in consumers]
        else:
            results = [asyncio.run(globals()[args.scenario](args, workdir))]
    command = " ".join(sys.argv[1:]) or "(defaults)"
    print(f"# {command}  (N={args.clients} M={args.users} K={args.creates} "
          f"layer={args.layer} processes={args.processes}, {os.cpu_count()} cores)")  # fmt: skip
    for result in results:
        print(
            "  ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )
    p50 = {result["consumer"]: result["p50_ms"] for result in results if "consumer" in result}
    # project/floor: the target is at most 1.3x; naive/project: at least 4x.
    for slower, faster, digits in (("project", "floor", 2), ("naive", "project", 1)):
        if slower in p50 and faster in p50:
            print(f"p50 ratio {slower}/{faster}: {p50[slower] / p50[faster]:.{digits}f}x")


if __name__ == "__main__":
    main()
