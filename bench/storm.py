#!/usr/bin/env python
"""
The live list at tens of thousands of sockets: clients spread over several client processes.

    .venv/bin/python bench/storm.py --scenario storm --clients 10000 [--jitter]
    .venv/bin/python bench/storm.py --scenario idle --clients 20000 --creates 10

Both run the project on two uvicorn processes with channels-redis' core layer
(--redis-url, flushed first) and --database-url (PostgreSQL; emptied first),
through bench/fanout.py's Deployment and Clients. The clients live in
--client-processes processes of this script (``--worker``), each holding its
share of the sockets and answering the coordinator over its stdin and stdout;
times are compared across processes with the machine's monotonic clock.

storm: N v2 clients, all on the first of the two server processes (run as
bench/counted.py); that process is killed with SIGKILL, --changes users are
created through REST on the second one while it is down, and it is started
again on the same port. Every client reconnects to it resuming from the
version it holds: with --jitter after the Python client's delays
(usersite_client.Backoff, before every attempt), without it at once and then
every 0.1 s (the worst case). Printed: the time from the kill and from the
restarted server's first answer until every client holds the current list;
the restarted process's list reads (its counters start at the restart, so
every read is the resumes') beside the distinct versions the clients held;
the restarted process's CPU seconds from its first answer until then;
the failed reconnect attempts, by HTTP status (a 5xx is a refusal) or
exception (a refused connection, an opening timeout); each server process's peak RSS
(sampled every 50 ms) against --memory-budget-mb; the clients whose list
differs from REST's at the end.

idle: N idle sockets on the project's two processes (v2) and N on bench/floor.py
run on two other processes under the same uvicorn command (v1: the floor has
no v2), the project's opened first, both sides' kept open together; each
side's resident memory per socket (its two processes, before and after its
sockets opened). Then K creates,
alternating project and floor: a project create is one REST POST (its channel
layer takes it to both processes), a floor create is the same POST to each
floor process at once (the floor has no layer); its latency ends when every
one of that side's N clients holds the new user. The floor starts with one
user so that its whole-list frames stay near the size of the project's change
sets; both sizes are printed. Printed: p50 and p99 per side and p99
project/floor (the issue's target: at most 1.5x).

Each server process's log is in --logs (a temporary folder by default); the
lines with "Traceback" in them are counted.
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from argparse import Namespace
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import uvloop  # noqa: E402
from usersite_client.backoff import Backoff  # noqa: E402

from bench.fanout import (  # noqa: E402
    Clients,
    Deployment,
    client_cpu_seconds,
    first_answer,
    server_counts,
)


class TargetClients(Clients):
    """Clients that also note the size of the frames that carried the awaited marker."""

    def expect(self, marker: str) -> None:
        self.target_bytes = []
        super().expect(marker)

    def take(self, index: int, frame: str) -> None:
        if self.target and not self.has_target[index] and self.target in frame:
            self.target_bytes.append(len(frame.encode()))
        super().take(index, frame)


async def work() -> None:
    """A client process: carry out the coordinator's commands, one JSON line each."""
    clients = None
    loop = asyncio.get_running_loop()
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        op = command["op"]
        answer = {}
        if op == "open":
            clients = TargetClients(
                command["protocol"],
                reconnect=command["reconnect"],
                backoff=Backoff if command["jitter"] else None,
            )
            servers = [SimpleNamespace(ws_url=url) for url in command["urls"]]
            await clients.open(servers, command["count"])
        elif op == "held":
            answer["versions"] = sorted({(h.epoch, h.version) for h in clients.latest})
        elif op == "expect":
            clients.expect(command["marker"])
        elif op == "wait":
            await clients.all_have_it.wait()
            answer["at"] = max(clients.received_at)
            answer["bytes"] = statistics.mean(clients.target_bytes)
        elif op == "current":
            head = (command["epoch"], command["version"])
            while clients.count_current("", head) < len(clients.sockets):
                await asyncio.sleep(0.01)
            answer["at"] = max(clients.received_at)
            answer["reconnected"] = [min(clients.reconnected_at), max(clients.reconnected_at)]
            async with httpx.AsyncClient(timeout=120) as http:
                users = (await http.get(command["users_url"])).json()["users"]
            answer["wrong_lists"] = clients.count_wrong(users, head)
            answer["broken_changes"] = clients.broken
            answer["failed_attempts"] = clients.failed_attempts
        elif op == "close":
            await clients.close()
        answer["cpu_s"] = client_cpu_seconds()
        answer["now"] = loop.time()
        print(json.dumps(answer), flush=True)


class Worker:
    """A client process of this script, and the way to give it commands."""

    async def start(self) -> "Worker":
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=2**24,
        )  # fmt: skip
        return self

    async def ask(self, op: str, **fields) -> dict:
        self.process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {self.process.pid} ended (its error is above)")
        return json.loads(line)

    async def stop(self) -> None:
        self.process.stdin.close()
        await self.process.wait()


async def ask_all(workers: list[Worker], op: str, **fields) -> list[dict]:
    return await asyncio.gather(*(worker.ask(op, **fields) for worker in workers))


async def start_workers(count: int) -> list[Worker]:
    return await asyncio.gather(*(Worker().start() for _ in range(count)))


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares."""
    return [total // parts + (i < total % parts) for i in range(parts)]


async def open_clients(workers, urls, count, protocol, **options) -> None:
    """Open ``count`` clients on ``urls``, spread over ``workers``."""
    await asyncio.gather(
        *(
            worker.ask("open", urls=urls, count=share, protocol=protocol, **options)
            for worker, share in zip(workers, shares(count, len(workers)), strict=True)
        )
    )


class PeakMemory:
    """Each of a deployment's processes' peak resident memory, sampled every 50 ms."""

    def __init__(self, deployment: Deployment):
        self.deployment, self.peaks = deployment, [0] * len(deployment.servers)
        self.task = asyncio.create_task(self.sample())

    async def sample(self) -> None:
        while True:
            for i, process in enumerate(self.deployment.processes):
                # A killed process is gone until the restart is watched.
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peaks[i] = max(self.peaks[i], process.memory_info().rss)
            await asyncio.sleep(0.05)


def tracebacks(workdir: Path) -> int:
    return sum(log.read_text().count("Traceback") for log in workdir.glob("*.log"))


async def storm(args, workdir: Path) -> dict:
    deployment = Deployment(deployment_args(args, count=True), "project", workdir)
    target, other = deployment.servers
    workers = await start_workers(args.client_processes)
    memory = PeakMemory(deployment)
    loop = asyncio.get_running_loop()
    try:
        await open_clients(
            workers, [target.ws_url], args.clients, "v2", reconnect=True, jitter=args.jitter
        )
        answers = await ask_all(workers, "held")
        held = {tuple(version) for answer in answers for version in answer["versions"]}
        cpu = [answer["cpu_s"] for answer in answers]
        other_before = await server_counts([other.url])
        killed_at = loop.time()
        target.process.kill()
        await asyncio.to_thread(target.process.wait)
        statuses = Counter()
        async with httpx.AsyncClient(timeout=60) as http:
            for k in range(args.changes):
                response = await http.post(
                    f"{other.url}/api/v1/users", json={"name": f"Made while down {k}"}
                )
                statuses[response.status_code] += 1
        epoch, version = response.headers["ETag"].strip('"').rsplit(".", 1)
        answered = asyncio.create_task(first_answer(target.url))
        await asyncio.to_thread(target.start)
        deployment.watch_processes()
        answered_at = await answered
        restarted = deployment.processes[0]
        restarted_cpu = sum(restarted.cpu_times()[:2])
        answers = await ask_all(
            workers, "current", epoch=epoch, version=int(version),
            users_url=f"{other.url}/api/v1/users",
        )  # fmt: skip
        current_at = max(answer["at"] for answer in answers)
        restarted_cpu = sum(restarted.cpu_times()[:2]) - restarted_cpu
        # The health check may answer after the first socket did.
        answered_at = min(answered_at, *(answer["reconnected"][0] for answer in answers))
        reads_target = await server_counts([target.url])
        reads_other = await server_counts([other.url]) - other_before
        failed = sum((Counter(answer["failed_attempts"]) for answer in answers), Counter())
        return {
            "clients": args.clients,
            "jitter": args.jitter,
            "client_processes": args.client_processes,
            "versions_held_at_kill": len(held),
            "restarted_reads": reads_target["reads"],
            "restarted_read_queries": reads_target["read_queries"],
            "other_reads": reads_other["reads"],
            "kill_to_answer_s": answered_at - killed_at,
            "answer_to_all_current_s": current_at - answered_at,
            "kill_to_all_current_s": current_at - killed_at,
            "rest_statuses": dict(statuses),
            "failed_reconnects": dict(failed),
            "wrong_lists": sum(answer["wrong_lists"] for answer in answers),
            "broken_changes": sum(answer["broken_changes"] for answer in answers),
            "peak_rss_mb": [round(peak / 1e6) for peak in memory.peaks],
            "over_budget": sum(peak > args.memory_budget_mb * 1e6 for peak in memory.peaks),
            "restarted_cpu_s": restarted_cpu,
            "client_cpu_s": [round(a["cpu_s"] - c, 2) for a, c in zip(answers, cpu, strict=True)],
            "tracebacks": tracebacks(workdir),
        }
    finally:
        memory.task.cancel()
        await ask_all(workers, "close")
        await asyncio.gather(*(worker.stop() for worker in workers))
        deployment.stop()


async def opened_with_memory(deployment, workers, count, protocol) -> float:
    """Open ``count`` idle clients on ``deployment``; return its growth in KB per socket."""
    urls = [server.ws_url for server in deployment.servers]
    await open_clients(workers[:1], urls, 10, protocol, reconnect=False, jitter=False)
    await ask_all(workers[:1], "close")  # the paths' first use, not counted
    await asyncio.sleep(1)
    before = deployment.rss()
    await open_clients(workers, urls, count, protocol, reconnect=False, jitter=False)
    await asyncio.sleep(3)
    return (deployment.rss() - before) / count / 1e3


async def idle(args, workdir: Path) -> dict:
    project = Deployment(deployment_args(args), "project", workdir)
    floor = Deployment(deployment_args(args), "floor", workdir, users=1)
    sides = {"project": project, "floor": floor}
    workers = {side: await start_workers(args.client_processes) for side in sides}
    try:
        kb = {
            "project": await opened_with_memory(project, workers["project"], args.clients, "v2"),
            "floor": await opened_with_memory(floor, workers["floor"], args.clients, "v1"),
        }
        latencies = {side: [] for side in sides}
        frame_bytes = {side: [] for side in sides}
        cpu = {side: sides[side].cpu_seconds() for side in sides}
        async with httpx.AsyncClient(timeout=60) as http:
            for k in range(2 * args.creates):
                side = ("project", "floor")[k % 2]
                name = f"Idle {k} {uuid.uuid4().hex[:8]}"  # short: the floor's list grows
                await ask_all(workers[side], "expect", marker=name)
                urls = [server.url for server in sides[side].servers]
                sent = asyncio.get_running_loop().time()
                # The project's layer takes a create to both processes; the floor has none.
                responses = await asyncio.gather(
                    *(
                        http.post(f"{url}/api/v1/users", json={"name": name})
                        for url in (urls[:1] if side == "project" else urls)
                    )
                )
                for response in responses:
                    response.raise_for_status()
                answers = await ask_all(workers[side], "wait")
                latencies[side].append(max(answer["at"] for answer in answers) - sent)
                frame_bytes[side].append(statistics.mean(answer["bytes"] for answer in answers))
        result = {"sockets_per_side": args.clients, "creates_per_side": args.creates}
        for side in sides:
            ordered = sorted(latencies[side])
            result |= {
                f"{side}_kb_per_socket": kb[side],
                f"{side}_p50_ms": 1000 * statistics.median(ordered),
                f"{side}_p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
                f"{side}_frame_bytes": statistics.mean(frame_bytes[side]),
                f"{side}_server_cpu_s": sides[side].cpu_seconds() - cpu[side],
            }
        result["p50_ratio"] = result["project_p50_ms"] / result["floor_p50_ms"]
        result["p99_ratio"] = result["project_p99_ms"] / result["floor_p99_ms"]
        result["tracebacks"] = tracebacks(workdir)
        return result
    finally:
        for side_workers in workers.values():
            await ask_all(side_workers, "close")
            await asyncio.gather(*(worker.stop() for worker in side_workers))
        project.stop()
        floor.stop()


def deployment_args(args, count: bool = False) -> Namespace:
    """What bench/fanout.py's Deployment reads: two processes, the core layer."""
    return Namespace(
        users=args.users, database_url=args.database_url, layer="core",
        redis_url=args.redis_url, count=count, processes=2,
    )  # fmt: skip


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        # uvloop, as the servers: the clients share the servers' two cores, and
        # asyncio's own loop cost them more CPU per connect than the server's handshake.
        uvloop.run(work())
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scenario", choices=["storm", "idle"], required=True)
    parser.add_argument("--clients", "-n", type=int, default=1000, help="N sockets (1000)")
    parser.add_argument("--users", "-m", type=int, default=100, help="M users prefilled (100)")
    parser.add_argument("--creates", "-k", type=int, default=10, help="idle: K creates per side")
    parser.add_argument("--changes", type=int, default=10, help="storm: creates while down (10)")
    parser.add_argument("--jitter", action="store_true", help="storm: the Python client's delays")
    parser.add_argument("--client-processes", type=int, default=2, help="per side (2)")
    parser.add_argument("--memory-budget-mb", type=int, default=1024, help="storm: per process")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="FLUSHED first")
    parser.add_argument(
        "--database-url", required=True, help="a PostgreSQL database the benchmark may empty"
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    # uvicorn's --limit-concurrency (10,000 by default) counts the sockets too.
    os.environ.setdefault("SERVER_MAX_CONNECTIONS", str(args.clients + 2000))
    with tempfile.TemporaryDirectory() as folder:
        workdir = args.logs or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = asyncio.run(globals()[args.scenario](args, workdir))
    print(f"# {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, {time.monotonic() - started:.0f} s)")  # fmt: skip
    print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()))  # fmt: skip


if __name__ == "__main__":
    main()
