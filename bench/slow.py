#!/usr/bin/env python
"""
Memory held for slow sockets: one large list frame sent to N clients that do not read.

    .venv/bin/python bench/slow.py [--users 50000] [--clients 50] [--ws shared,stock]

One server process (servers.py's uvicorn command) on a fresh SQLite database
of M users; N v2 clients open a socket with a 4 KiB receive buffer and never
read, so the server is left holding what the kernel does not take of the
snapshot it sends each of them. Once /metrics counts the N snapshots handed
to the server, the server's resident memory against before the clients is
given in MB and in copies of the frame. ``--ws`` picks uvicorn's protocol:
``shared`` is the deployments' (usersite.websocket_protocol, one copy shared
by the sockets), ``stock`` is uvicorn's websockets-sansio (a copy each).
"""

import argparse
import asyncio
import os
import socket
import sys
from base64 import b64encode
from os import urandom
from pathlib import Path
from types import SimpleNamespace

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import servers  # noqa: E402
from bench.fanout import Deployment  # noqa: E402
from bench.writes import run_and_describe  # noqa: E402

WARM = 3  # slow sockets opened before the baseline

PROTOCOLS = {
    "shared": "usersite.websocket_protocol:SharedTextProtocol",
    "stock": "websockets-sansio",
}


def slow_client(port: int) -> socket.socket:
    """A v2 socket, handshake done, whose 4 KiB receive buffer nobody reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = b64encode(urandom(16)).decode()
    sock.sendall(
        f"GET {servers.SOCKET_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: users.v2\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # one byte at a time: leave the frames unread
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(answer.decode(errors="replace"))
    return sock


async def wait_for_snapshots(url: str, count: int) -> None:
    """Wait until the server at ``url`` has handed ``count`` snapshots to its transports."""
    async with asyncio.timeout(120):
        while await snapshots_handed(url) < count:
            await asyncio.sleep(0.1)


async def snapshots_handed(url: str) -> float:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{url}/metrics")
        response.raise_for_status()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line.startswith("usersite_frames_sent_total") and 'kind="snapshot"' in line
    )


async def measure(args, ws: str, workdir: Path) -> dict:
    command = servers.COMMANDS["uvicorn"]
    command[command.index("--ws") + 1] = PROTOCOLS[ws]
    options = SimpleNamespace(
        users=args.users, layer="memory", database_url=None, redis_url="", count=False,
        processes=1,
    )  # fmt: skip
    (workdir / ws).mkdir(exist_ok=True)
    deployment = Deployment(options, "project", workdir / ws)
    (server,) = deployment.servers
    sockets = []
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            frame_bytes = len((await http.get(f"{server.url}/api/v1/users")).content)
        for _ in range(WARM):  # the paths' first use, and the frames each process keeps
            sockets.append(await asyncio.to_thread(slow_client, server.port))
        await wait_for_snapshots(server.url, WARM)
        await asyncio.sleep(3)
        before = deployment.rss()
        for _ in range(args.clients):
            sockets.append(await asyncio.to_thread(slow_client, server.port))
        await wait_for_snapshots(server.url, args.clients + WARM)
        await asyncio.sleep(3)
        grown = deployment.rss() - before
        return {
            "ws": ws,
            "clients": args.clients,
            "frame_mb": frame_bytes / 1e6,
            "rss_growth_mb": grown / 1e6,
            "frame_copies_held": grown / frame_bytes,
        }
    finally:
        for sock in sockets:
            sock.close()
        deployment.stop()


async def run(args) -> list:
    results = []
    for ws in args.ws.split(","):
        result = await measure(args, ws, args.workdir)
        print(
            " ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50_000, help="(50000)")
    parser.add_argument("--clients", type=int, default=50, help="(50)")
    parser.add_argument("--ws", default="shared,stock", help="shared, stock or both (both)")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    args.postgres_url = args.redis_url = "redis://127.0.0.1"  # loopback services only
    os.environ["METRICS_ALLOWED_IPS"] = "127.0.0.1"
    run_and_describe(parser, args, run)


if __name__ == "__main__":
    main()
