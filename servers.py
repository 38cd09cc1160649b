"""
Start and stop usersite server processes.

Used by ``dev.py cluster``, the end-to-end tests and the benchmarks. Standard
library only, so that dev.py can import it before the virtualenv exists.

    python servers.py --port 8001 [--host 127.0.0.1]

becomes one uvicorn process with this environment's settings (for a service
manager: deploy/usersite@.service), so a deployment runs the exact command
that the tests run.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ASGI_APP = "usersite.asgi:application"
SOCKET_PATH = "/api/v1/users/ws"  # users.sockets.routing serves the live list there

# The production server is uvicorn: its websockets-sansio protocol (as
# usersite.websocket_protocol extends it, to share a frame's bytes) makes a send
# wait while the client's TCP buffer is full, which lets a consumer drop stale
# lists for a slow client and close it (daphne buffers without bound,
# django/daphne#170). Incoming messages are capped at 1 MiB on both servers
# (daphne's default; uvicorn's is 16 MiB).
# No per-message deflate: it compresses the same list again for every socket,
# which cost more CPU than anything else in a fan-out (docs/performance.md).
# Past SERVER_MAX_CONNECTIONS open connections (sockets, and connections that
# never finish their request, which neither server times out) uvicorn answers
# new HTTP requests 503 instead of taking on more (docs/security.md).
# uvicorn's lifespan stays on "auto": at shutdown the project's relay leaves its group.
MAX_MESSAGE_BYTES = str(1024 * 1024)
COMMANDS = {
    "uvicorn": [
        "-m", "uvicorn", "{app}", "--host", "{host}", "--port", "{port}",
        "--ws", "usersite.websocket_protocol:SharedTextProtocol",
        "--ws-max-size", MAX_MESSAGE_BYTES,
        "--ws-per-message-deflate", "false", "--no-access-log",
        "--limit-concurrency", "{max_connections}",
    ],
    # daphne sending lists of any size; -1: no socket lifetime limit (daphne's
    # default closes sockets after a day).
    "daphne": [
        "-m", "usersite.daphne_server", "-b", "{host}", "-p", "{port}",
        "--websocket_timeout", "-1", "{app}",
    ],
    "runserver": ["manage.py", "runserver", "--noreload", "{host}:{port}"],
}  # fmt: skip


DEFAULT_MAX_CONNECTIONS = "10000"


def proxy_options(env: dict) -> list[str]:
    """
    Return uvicorn's proxy header options: off unless FORWARDED_ALLOW_IPS names the proxies.

    uvicorn's own default trusts X-Forwarded-Proto and X-Forwarded-For from
    127.0.0.1, so anything on the host could forge the scheme and the client
    address that per-address rate limits count. Only the proxies listed
    (comma-separated addresses or networks) are believed. Daphne believes no
    proxy headers unless told to, and is never told to here.
    """
    proxies = [part.strip() for part in env.get("FORWARDED_ALLOW_IPS", "").split(",")]
    proxies = [proxy for proxy in proxies if proxy]
    if not proxies:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", ",".join(proxies)]


# Lifts the per-client write limits, and the anonymous read limit (users.throttling):
# for the benchmarks and the tests that write and read in bursts on purpose. The
# limits have tests of their own.
NO_WRITE_LIMITS = {
    "USERS_REST_WRITE_RATE": "1000000/s",
    "USERS_REST_ANONYMOUS_READ_RATE": "1000000/s",
    "USERS_SOCKET_CREATE_RATE": "1000000",
    "USERS_SOCKET_CREATE_BURST": "1000000",
}


def http_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}{SOCKET_PATH}"


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_range(count: int) -> int:
    """
    Return the first of ``count`` consecutive loopback ports that nothing uses now.

    Drawn below Linux's ephemeral range (32768 and up), where outgoing
    connections would otherwise take a neighbour of a port handed out above.
    """
    while True:
        first = random.randrange(20000, 32768 - count)
        probes = [socket.socket() for _ in range(count)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


class ServerProcess:
    """One server process, its output in a log file (or this process's, with ``log=None``)."""

    def __init__(
        self, python: str, kind: str, port: int, env: dict, log: Path | None,
        app: str = ASGI_APP, host: str = "127.0.0.1",
    ):  # fmt: skip
        max_connections = env.get("SERVER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)
        arguments = (
            part.format(port=port, app=app, host=host, max_connections=max_connections)
            for part in COMMANDS[kind]
        )
        self.command = [python, *arguments, *(proxy_options(env) if kind == "uvicorn" else [])]
        self.port, self.env, self.log = port, env, log
        self.url, self.ws_url = http_url(port), ws_url(port)
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30) -> "ServerProcess":
        """Start the process and wait until it answers HTTP; raise RuntimeError if it does not."""
        output = self.log.open("ab") if self.log else None
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
        finally:
            if output:
                output.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited:\n{self.log.read_text() if self.log else ''}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers, even if what it depends on does not (503)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.command} did not answer in {ready_timeout} s:\n{self.log.read_text()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(args: list[str]) -> None:
    """Replace this process with one uvicorn server: signals then reach uvicorn itself."""
    parser = argparse.ArgumentParser(prog="servers.py", description="Run one uvicorn process.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args(args)
    server = ServerProcess(sys.executable, "uvicorn", options.port, dict(os.environ), None,
                           host=options.host)  # fmt: skip
    os.chdir(ROOT)
    os.execv(sys.executable, server.command)


if __name__ == "__main__":
    main(sys.argv[1:])
