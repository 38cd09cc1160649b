"""A server in production mode: DEBUG off, collected static files, JSON logs, health."""

import json
import secrets
import subprocess
import sys

import httpx
import pytest
import redis
import websockets
from websockets.asyncio.client import connect

from servers import ROOT


@pytest.fixture
def production(server_env, tmp_path) -> dict:
    """Production settings over plain HTTP (TLS is the proxy's), static files collected."""
    env = {
        **server_env,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HTTPS": "false",
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    env.pop("LOG_FORMAT", None)  # JSON is the default with DEBUG off
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return env


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_static_files_and_health_are_served_with_debug_off(start_server, production, kind):
    server = start_server(kind, **production)
    async with httpx.AsyncClient(base_url=server.url) as http:
        css = await http.get("/static/admin/css/base.css")
        script = await http.get("/static/users/live-list.js")
        # Collected from clients/js/src (STATICFILES_DIRS): the page's script imports it.
        client = await http.get("/static/usersite-client/usersite-client.js")
        health = await http.get("/healthz")
    assert (css.status_code, css.headers["content-type"]) == (200, 'text/css; charset="utf-8"')
    assert script.status_code == 200
    assert client.status_code == 200 and "javascript" in client.headers["content-type"]  # noqa: PT018
    assert (health.status_code, health.json()) == (200, {"database": "ok", "channel_layer": "ok"})


async def test_logs_are_one_json_object_per_line(start_server, production):
    server = start_server("uvicorn", **production)
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.get("/does-not-exist")  # a warning from django.request
    server.stop()
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"] == "django.request" and "Not Found" in r["message"] for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records), "uvicorn's lines not in JSON"


async def test_health_answers_503_naming_only_an_unreachable_database(
    start_server, production, tmp_path
):
    missing = tmp_path / "no-such-folder" / "db.sqlite3"
    server = start_server("uvicorn", **{**production, "DATABASE_URL": f"sqlite:///{missing}"})
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = await http.get("/healthz")
    server.stop()
    assert (health.status_code, health.json()) == (
        503,
        {"database": "failing", "channel_layer": "ok"},
    )
    records = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    warnings = [r["message"] for r in records if r["logger"] == "users.api.views"]
    assert any("database failing: OperationalError" in message for message in warnings)


async def test_a_request_leaves_no_access_line_in_the_log(start_server, production):
    server = start_server("uvicorn", **production)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200
    server.stop()
    records = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    assert records, "the server logged nothing at all"
    assert not [r for r in records if r["logger"] == "uvicorn.access"]
    assert "/healthz" not in server.log.read_text()


async def test_anonymous_readers_are_refused_by_default_with_debug_off(start_server, production):
    server = start_server("uvicorn", **production)
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        users = await http.get("/api/v1/users")
    assert (page.status_code, page.headers["location"]) == (302, "/admin/login/?next=/")
    assert users.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(server.ws_url):
            pass
    assert refused.value.response.status_code == 403


async def test_health_reuses_its_redis_connections(start_server, own_redis):
    server = start_server("uvicorn", REDIS_URL=own_redis.url)
    with redis.Redis.from_url(own_redis.url) as watcher:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/healthz")).status_code == 200  # the pool's first connection
            before = watcher.info("stats")["total_connections_received"]
            answers = [(await http.get("/healthz")).status_code for _ in range(100)]
        opened = watcher.info("stats")["total_connections_received"] - before
    print(f"100 health checks opened {opened} Redis connections")
    assert answers == [200] * 100
    # The relay's and the channel layer's connections may come and go meanwhile;
    # a pool per check opened at least one per check.
    assert opened < 10
