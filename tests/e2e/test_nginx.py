"""
deploy/nginx.conf in front of two uvicorn processes, on loopback ports.

A copy of the file with the test's ports and a self-signed certificate, run by
Debian's nginx as this user (its own prefix, pid, logs and temporary files),
with clients that speak TLS to it as they would to the site.
"""

import asyncio
import datetime
import getpass
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from types import SimpleNamespace

import httpx
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from servers import ROOT, SOCKET_PATH, free_port
from tests.e2e.clients import unique_name
from tests.e2e.conftest import needs_redis

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx.conf"

# Two processes share the list through Redis; they trust the proxy on 127.0.0.1.
pytestmark = [needs_redis, pytest.mark.backends]
BEHIND_NGINX = {
    "FORWARDED_ALLOW_IPS": "127.0.0.1",
    "TRUST_X_FORWARDED_PROTO": "true",
    "HTTPS": "true",
}


def self_signed_certificate(folder) -> tuple:
    """Write a certificate for 127.0.0.1 and its key; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def render_site(processes: list[int], http_port: int, https_port: int, cert, key) -> str:
    """deploy/nginx.conf with these ports and certificate, each change made exactly once."""
    site = SITE.read_text()
    upstream_servers = re.findall(r"^ *server 127\.0\.0\.1:\d+ (.*);\n", site, flags=re.M)
    assert upstream_servers, "no upstream servers in deploy/nginx.conf"
    options = upstream_servers[0]
    ours = "".join(f"    server 127.0.0.1:{port} {options};\n" for port in processes)
    site = re.sub(r"(^ *server 127\.0\.0\.1:\d+ .*;\n)+", ours, site, count=1, flags=re.M)
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/letsencrypt/live/users.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/users.example.org/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert site.count(old) == 1, f"deploy/nginx.conf changed: {old!r}"
        site = site.replace(old, new)
    return site


def main_config(folder) -> str:
    """An nginx.conf of this user's, around the site file, in place of Debian's."""
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""  # workers read tmp_path
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
pid {folder / "nginx.pid"};
error_log {folder / "error.log"};
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temp_paths}
    include {folder / "usersite.conf"};
}}
"""


@pytest.fixture
def nginx_in_front(start_server, tmp_path):
    """Two uvicorn processes and nginx before them: its addresses and the clients' TLS context."""
    if not os.path.exists(NGINX):
        if os.environ.get("USERSITE_REQUIRE_NGINX") == "1":
            pytest.fail(f"USERSITE_REQUIRE_NGINX=1 but there is no nginx at {NGINX}")
        pytest.skip("needs nginx (Debian's nginx package) to test deploy/nginx.conf")
    processes = [start_server("uvicorn", **BEHIND_NGINX) for _ in range(2)]
    folder = tmp_path / "nginx"
    folder.mkdir()
    cert, key = self_signed_certificate(folder)
    http_port, https_port = free_port(), free_port()
    ports = [process.port for process in processes]
    (folder / "usersite.conf").write_text(render_site(ports, http_port, https_port, cert, key))
    (folder / "nginx.conf").write_text(main_config(folder))
    error_log = folder / "error.log"
    nginx = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(error_log),
         "-g", "daemon off;"],
    )  # fmt: skip
    try:
        wait_for_port(nginx, https_port, error_log)
        yield SimpleNamespace(
            processes=processes,
            https_url=f"https://127.0.0.1:{https_port}",
            http_url=f"http://127.0.0.1:{http_port}",
            tls=ssl.create_default_context(cafile=str(cert)),
        )
    finally:
        nginx.terminate()
        nginx.wait(10)


def wait_for_port(nginx: subprocess.Popen, port: int, error_log, timeout: float = 10) -> None:
    """Wait until nginx accepts connections on ``port``; fail with its error log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert nginx.poll() is None, f"nginx exited:\n{error_log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on {port}:\n{error_log.read_text()}")


class ReconnectingClient:
    """A protocol v1 client that reconnects, as apps do, whenever its socket closes."""

    def __init__(self, url: str, tls: ssl.SSLContext):
        self.url, self.tls = url, tls
        self.latest, self.connections = None, 0
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while True:
            try:
                async with connect(self.url, ssl=self.tls) as ws:
                    self.connections += 1
                    async for frame in ws:
                        self.latest = json.loads(frame)
            except (WebSocketException, OSError):
                pass
            await asyncio.sleep(0.1)

    async def wait_for(self, expected: list, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.latest != expected:
                await asyncio.sleep(0.05)


def open_sockets_on(port: int) -> int:
    """Connections established to a process's port: nginx's, one per socket before any HTTP."""
    return sum(
        1 for c in psutil.net_connections("tcp")
        if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )  # fmt: skip


async def test_sockets_and_rest_pass_through_and_a_stopped_process_clients_move_over(
    nginx_in_front,
):
    a, b = nginx_in_front.processes
    ws_url = nginx_in_front.https_url.replace("https://", "wss://") + SOCKET_PATH
    clients = [ReconnectingClient(ws_url, nginx_in_front.tls) for _ in range(2)]
    try:
        https = httpx.AsyncClient(base_url=nginx_in_front.https_url, verify=nginx_in_front.tls)
        async with https as http:
            async with asyncio.timeout(10):
                while any(client.latest is None for client in clients):
                    await asyncio.sleep(0.05)
            # least_conn: one socket on each process.
            assert (open_sockets_on(a.port), open_sockets_on(b.port)) == (1, 1)

            first = await http.post("/api/v1/users", json={"name": unique_name("nginx")})
            assert first.status_code == 201  # HTTPS=true: the processes took https from nginx
            for client in clients:
                await client.wait_for((await http.get("/api/v1/users")).json()["users"])

            a.stop()
            second = await http.post("/api/v1/users", json={"name": unique_name("nginx")})
            assert second.status_code == 201
            current = (await http.get("/api/v1/users")).json()["users"]
            for client in clients:
                await client.wait_for(current)
            assert sorted(client.connections for client in clients) == [1, 2]

        async with httpx.AsyncClient() as plain:
            redirect = await plain.get(f"{nginx_in_front.http_url}/api/v1/users")
        assert (redirect.status_code, redirect.headers["location"]) == (
            301, "https://127.0.0.1/api/v1/users",
        )  # fmt: skip
    finally:
        for client in clients:
            client.task.cancel()
