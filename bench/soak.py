#!/usr/bin/env python
"""
Soak: sockets that come and go and a steady stream of writes, for a long time,
watching what would grow if something leaked.

    .venv/bin/python bench/soak.py                         # 30 minutes
    .venv/bin/python bench/soak.py --minutes 5 --history-seconds 60  # as docs/reliability.md

Two uvicorn processes (the deployment's command, servers.py) on PostgreSQL and
channels-redis; --sockets v2 sockets (2,000) spread over them, which read every
frame; each second --churn of them (20) close and as many new ones connect;
--writes socket commands a second (10) from --writers sockets (5), each sent
at its time (open loop) and acknowledged: creates, renames and deletes in turn,
so the list stays about the same size. The sockets run in --client-processes
(2), the writers and the measurements in this one. Every --sample seconds (30)
it prints each server process's RSS and open file descriptors, the Redis
database's keys, and the rows of users, tombstones and receipts, with those
older than the history window (USERS_HISTORY_SECONDS) and the housekeeper's
sweep period: what it should have forgotten. The summary compares the first sample after
--warm-up seconds (60) with the last.

The database is a fresh one on --postgres-url's server (dropped at the end), or
--database-url as it is; the Redis database of --redis-url is FLUSHED.
All traffic goes to 127.0.0.1.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, suppress
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402

from bench.writes import fresh_database, run_and_describe  # noqa: E402
from servers import NO_WRITE_LIMITS, ServerProcess, free_port  # noqa: E402

NOT_PASSED = {"DJANGO_SETTINGS_MODULE", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"}
V2 = ["users.v2"]
KEEP_USERS = 20  # each writer creates this many before it deletes any
# Expired history waits for the housekeeper's next sweep, once a minute
# (users.housekeeping.FORGET_INTERVAL): only rows older than that count as left over.
SWEEP_PERIOD = 60
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_env(args, database_url: str) -> dict:
    env = {
        **{name: value for name, value in os.environ.items() if name not in NOT_PASSED},
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "benchmark-only",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "USERS_ANONYMOUS_WRITES": "true",
        "USERS_ANONYMOUS_READS": "true",
        "SERVER_MAX_CONNECTIONS": str(args.sockets * 2),
        **NO_WRITE_LIMITS,
        "LOG_LEVEL": "WARNING",
    }
    if args.history_seconds:
        env["USERS_HISTORY_SECONDS"] = str(args.history_seconds)
    return env


COUNTERS = ("sockets", "connects", "disconnects", "failed", "dropped")


class Sockets:
    """
    The churning sockets of one client process: each reads every frame until
    it is told to close. Its counters (COUNTERS) go to a shared array each second.
    """

    def __init__(self, ws_urls: list[str], counters):
        self.ws_urls, self.counters = ws_urls, counters
        self.open: dict[int, asyncio.Task] = {}
        self.numbers = iter(range(sys.maxsize))
        self.connects = self.disconnects = self.failed = self.dropped = 0

    def add(self) -> None:
        number = next(self.numbers)
        url = self.ws_urls[number % len(self.ws_urls)]
        self.open[number] = asyncio.create_task(self.hold(number, url))

    async def hold(self, number: int, url: str) -> None:
        try:
            ws = await connect(url, subprotocols=V2, open_timeout=30, max_size=None)
        except (OSError, InvalidHandshake, TimeoutError):
            self.failed += 1
            self.open.pop(number, None)
            return
        self.connects += 1
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            self.disconnects += 1
            await ws.close()
            raise
        self.dropped += 1  # the server closed it
        self.open.pop(number, None)

    def remove(self, count: int) -> None:
        for number in random.sample(list(self.open), min(count, len(self.open))):
            self.open.pop(number).cancel()

    async def churn(self, target: int, per_second: int, ramp_per_second: int = 100) -> None:
        """Open ``target`` sockets, then each second close ``per_second`` and open as many."""
        while True:
            if self.connects + self.failed >= target:  # ramped up: churn
                self.remove(per_second)
            for _ in range(min(ramp_per_second, target - len(self.open))):
                self.add()
            values = (len(self.open), self.connects, self.disconnects, self.failed, self.dropped)
            self.counters[:] = values
            await asyncio.sleep(1)


def client_process(ws_urls: list[str], target: int, per_second: int, counters) -> None:
    """Run one share of the churning sockets (in a process of its own)."""
    with suppress(KeyboardInterrupt):
        asyncio.run(Sockets(ws_urls, counters).churn(target, per_second))


class Writer:
    """
    One socket sending commands at a steady rate, each at its time whatever
    the answers to earlier ones (open loop): create, rename, delete (once it
    has KEEP_USERS users; before, another create).
    """

    def __init__(self, ws_url: str):
        self.ws_url = ws_url
        self.acked = self.errors = self.reconnects = 0
        self.ids: list[str] = []
        self.steps = iter(range(sys.maxsize))

    async def run(self, per_second: float) -> None:
        """Write until cancelled; connect again if the connection is lost (counted)."""
        while True:
            with suppress(ConnectionClosed, OSError):
                await self.write(per_second)
            self.reconnects += 1
            await asyncio.sleep(1)

    async def write(self, per_second: float) -> None:
        url = f"{self.ws_url}?client={uuid.uuid4().hex}"
        async with connect(url, subprotocols=V2, max_size=None) as ws:
            answers: dict[str, asyncio.Future] = {}
            reader = asyncio.create_task(self.read(ws, answers))
            in_flight = set()
            due = time.monotonic()
            try:
                for step in self.steps:
                    if reader.done():
                        reader.result()  # the connection was lost
                    task = asyncio.create_task(self.command(ws, answers, self.next_command(step)))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    due += 1 / per_second
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
            finally:
                reader.cancel()
                for task in in_flight:
                    task.cancel()

    def next_command(self, step: int) -> dict:
        kind = step % 3
        if kind == 1 and self.ids:
            return {"action": "update", "id": self.ids[-1], "name": f"soak {step} renamed"}
        if kind == 2 and len(self.ids) > KEEP_USERS:
            return {"action": "delete", "id": self.ids.pop(0)}
        return {"action": "create", "name": f"soak {step}"}

    async def command(self, ws, answers: dict, command: dict) -> None:
        request_id = uuid.uuid4().hex
        answers[request_id] = asyncio.get_running_loop().create_future()
        try:
            await ws.send(json.dumps({**command, "request_id": request_id}))
            answer = await asyncio.wait_for(answers[request_id], 30)
        except (TimeoutError, ConnectionClosed):
            answer = {"type": "error", "code": "no answer"}
        finally:
            del answers[request_id]
        if answer["type"] != "ack":
            self.errors += 1
            return
        self.acked += 1
        if command["action"] == "create":
            self.ids.append(answer["user"]["id"])

    @staticmethod
    async def read(ws, answers: dict) -> None:
        async for text in ws:
            frame = json.loads(text)
            future = answers.get(frame.get("request_id"))
            if future is not None and not future.done():
                future.set_result(frame)


def rows(database_url: str, window: int) -> dict:
    """Users, tombstones and receipts, and those a sweep past the history window."""
    with psycopg.connect(database_url) as conn:

        def count(sql: str) -> int:
            return conn.execute(sql, {"window": f"{window + SWEEP_PERIOD} s"}).fetchone()[0]

        return {
            "users": count("SELECT count(*) FROM users_user"),
            "tombstones": count("SELECT count(*) FROM users_usertombstone"),
            "receipts": count("SELECT count(*) FROM users_commandreceipt"),
            "expired": count(
                "SELECT (SELECT count(*) FROM users_usertombstone"
                "        WHERE deleted_at < now() - %(window)s::interval)"
                "     + (SELECT count(*) FROM users_commandreceipt"
                "        WHERE created_at < now() - %(window)s::interval)"
            ),
        }


def sample(elapsed: float, processes, redis_client, database_url, window, shares, writers) -> dict:
    return {
        "t": round(elapsed),
        "rss_mib": [round(p.memory_info().rss / 2**20, 1) for p in processes],
        "fds": [p.num_fds() for p in processes],
        "redis_keys": redis_client.dbsize(),
        **rows(database_url, window),
        **{name: sum(share[i] for share in shares) for i, name in enumerate(COUNTERS)},
        "acked": sum(writer.acked for writer in writers),
        "errors": sum(writer.errors for writer in writers),
        "writer_reconnects": sum(writer.reconnects for writer in writers),
    }


async def soak(args) -> list[dict]:
    with ExitStack() as stack:
        database_url = args.database_url or stack.enter_context(
            fresh_database(args, "postgres", "soak")
        )
        env = server_env(args, database_url)
        redis_client = redis.Redis.from_url(args.redis_url)
        redis_client.flushdb()
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        await asyncio.to_thread(subprocess.run, migrate, cwd=ROOT, env=env, check=True)
        servers = []
        for index in range(args.processes):
            server = ServerProcess(
                sys.executable, "uvicorn", free_port(), env, args.workdir / f"soak-{index}.log"
            )
            servers.append(server)
            stack.callback(server.stop)
            await asyncio.to_thread(server.start)
        processes = [psutil.Process(server.process.pid) for server in servers]
        window = args.history_seconds or 3600
        # The sockets in processes of their own: reading 2,000 sockets' frames
        # can saturate one Python process, whose writer would then lag.
        spawn = multiprocessing.get_context("spawn")
        shares = [spawn.Array("q", len(COUNTERS), lock=False) for _ in range(args.client_processes)]
        clients = [
            spawn.Process(
                target=client_process,
                args=(
                    [server.ws_url for server in servers],
                    args.sockets // args.client_processes,
                    args.churn // args.client_processes,
                    share,
                ),
            )
            for share in shares
        ]
        for client in clients:
            client.start()
            stack.callback(client.terminate)
        # A socket's commands are carried out one after another: a few writers,
        # so that the rate holds when a write takes longer than its share of a second.
        writers = [Writer(servers[i % len(servers)].ws_url) for i in range(args.writers)]
        rate = args.writes / args.writers
        tasks = [asyncio.create_task(writer.run(rate)) for writer in writers]
        samples = []
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.minutes * 60:
                await asyncio.sleep(args.sample)
                for task in tasks:
                    if task.done():
                        task.result()  # raises what stopped it
                if dead := [client.exitcode for client in clients if not client.is_alive()]:
                    raise RuntimeError(f"a client process ended ({dead})")
                now = time.monotonic() - started
                state = (processes, redis_client, database_url, window, shares, writers)
                samples.append(await asyncio.to_thread(sample, now, *state))
                print(json.dumps(samples[-1]), flush=True)
        finally:
            for task in tasks:
                task.cancel()
        return [*samples, logged(args.workdir)]


def logged(folder: Path) -> dict:
    """The servers' log lines at WARNING or above, and the tracebacks among them."""
    text = "".join(log.read_text(errors="replace") for log in folder.glob("soak-*.log"))
    warnings = sum('"level": "WARNING"' in line or '"level": "ERROR"' in line
                   for line in text.splitlines())  # fmt: skip
    return {"warnings": warnings, "tracebacks": text.count("Traceback")}


def summary(samples: list[dict], warm_up: float) -> list[str]:
    *samples, logs = samples
    after = [each for each in samples if each["t"] >= warm_up] or samples
    first, last = after[0], after[-1]
    rss = [
        f"{a:.1f} -> {b:.1f} MiB ({(b - a) / a:+.1%})"
        for a, b in zip(first["rss_mib"], last["rss_mib"], strict=True)
    ]
    peak = [max(each["rss_mib"][i] for each in after) for i in range(len(first["rss_mib"]))]
    return [
        f"from t={first['t']} s to t={last['t']} s (after {warm_up:g} s of warm-up):",
        f"  server RSS: {', '.join(rss)}; peak {', '.join(f'{p:.1f}' for p in peak)} MiB",
        f"  open fds: {first['fds']} -> {last['fds']}",
        f"  Redis keys: {first['redis_keys']} -> {last['redis_keys']}",
        f"  rows: users {first['users']} -> {last['users']}, tombstones "
        f"{first['tombstones']} -> {last['tombstones']}, receipts {first['receipts']} -> "
        f"{last['receipts']}; a sweep past the history window: {last['expired']}",
        f"  sockets: {last['connects']} connects, {last['disconnects']} closed by clients, "
        f"{last['dropped']} closed by the servers, {last['failed']} failed to connect",
        f"  writes: {last['acked']} acknowledged, {last['errors']} refused or unanswered, "
        f"{last['writer_reconnects']} writer reconnections",
        f"  server logs: {logs['warnings']} warnings or errors, {logs['tracebacks']} tracebacks",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (30)")
    parser.add_argument("--sockets", type=int, default=2000, help="(2000)")
    parser.add_argument("--churn", type=int, default=20, help="connects and disconnects/s (20)")
    parser.add_argument("--writes", type=float, default=10.0, help="socket commands/s (10)")
    parser.add_argument("--writers", type=int, default=5, help="sockets sending them (5)")
    parser.add_argument("--processes", type=int, default=2, help="server processes (2)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="processes the sockets run in (2)"
    )
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds (60)")
    parser.add_argument(
        "--history-seconds", type=int, help="the servers' USERS_HISTORY_SECONDS (their default)"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a server where the soak creates and drops its database",
    )
    parser.add_argument("--database-url", help="use this database as it is instead")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/12", help="FLUSHED (database 12)"
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if args.database_url and urlsplit(args.database_url).hostname not in LOOPBACK:
        parser.error("--database-url: loopback only")
    samples = run_and_describe(
        parser,
        args,
        soak,
        f"{args.sockets} sockets, {args.churn} connects and disconnects/s, "
        f"{args.writes:g} writes/s, {args.processes} processes",
    )
    for line in summary(samples, args.warm_up):
        print(line)


if __name__ == "__main__":
    main()
