"""GET /metrics: who may read it, and the numbers real traffic moves."""

import time

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import change_without_broadcast, receive_list
from users import services
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "a-metrics-token-for-tests"


@pytest.fixture
def scrapable(settings):
    """Let the test client (127.0.0.1) read /metrics."""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]


async def scrape() -> dict:
    """Read /metrics as Prometheus does: {(sample name, sorted labels): value}."""
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_are_not_served_by_default(settings):
    settings.METRICS_ALLOWED_IPS, settings.METRICS_TOKEN = [], ""
    assert (await AsyncClient().get("/metrics")).status_code == 404
    bearer = {"Authorization": "Bearer "}
    assert (await AsyncClient().get("/metrics", headers=bearer)).status_code == 404


async def test_metrics_are_served_to_an_allowed_network_only(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "::1"]
    assert (await AsyncClient().get("/metrics")).status_code == 404
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.0/8"]
    assert (await AsyncClient().get("/metrics")).status_code == 200


async def test_metrics_are_served_with_the_token_from_anywhere(settings):
    settings.METRICS_ALLOWED_IPS, settings.METRICS_TOKEN = [], TOKEN
    # Per request: AsyncClient(headers=...) sends "Http-Authorization" (Django 5.2).
    client, right, wrong = AsyncClient(), f"Bearer {TOKEN}", f"Bearer {TOKEN}x"
    assert (await client.get("/metrics", headers={"Authorization": right})).status_code == 200
    assert (await client.get("/metrics", headers={"Authorization": wrong})).status_code == 404
    assert (await client.post("/metrics", headers={"Authorization": right})).status_code == 405


async def test_metrics_are_not_redirected_to_https(scrapable, settings):
    settings.SECURE_SSL_REDIRECT = True  # a scraper reaches each process over plain HTTP
    assert (await AsyncClient().get("/api/v1/users")).status_code == 301
    assert (await AsyncClient().get("/metrics")).status_code == 200


async def test_the_open_sockets_gauge_follows_connects_and_disconnects(scrapable, connect):
    v1 = await connect()
    v2 = await connect(subprotocols=["users.v2"])
    await v1.receive_from(), await v2.receive_from()
    samples = await scrape()
    assert value(samples, "usersite_open_sockets", protocol="1") == 1
    assert value(samples, "usersite_open_sockets", protocol="2") == 1
    await v1.disconnect()
    samples = await scrape()
    assert value(samples, "usersite_open_sockets", protocol="1") == 0
    assert value(samples, "usersite_open_sockets", protocol="2") == 1


async def test_each_change_counts_a_change_set_a_list_a_publish_and_a_fanout(scrapable, connect):
    v1 = await connect()
    v2 = await connect(subprotocols=["users.v2"])
    await receive_list(v1), await v2.receive_json_from()
    before = await scrape()
    started = time.monotonic()
    for name in ("Ann", "Bob", "Cy"):
        await database_sync_to_async(services.user_create)(name=name)
        await receive_list(v1)
        assert (await v2.receive_json_from())["type"] == "changes"
    elapsed = time.monotonic() - started
    after = await scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("usersite_frames_sent_total", protocol="2", kind="changes") == 3
    assert moved("usersite_frames_sent_total", protocol="1", kind="list") == 3
    assert moved("usersite_frames_sent_total", protocol="2", kind="snapshot") == 0
    assert moved("usersite_publish_delay_seconds_count") == 3
    assert moved("usersite_fanout_duration_seconds_count") == 3
    # Seconds, not milliseconds: the three delays fit in the seconds the loop
    # took, whatever the machine's load (in milliseconds they would not).
    assert 0 < moved("usersite_publish_delay_seconds_sum") <= elapsed


async def test_a_new_v2_socket_counts_a_snapshot(scrapable, connect):
    before = await scrape()
    socket = await connect(subprotocols=["users.v2"])
    assert (await socket.receive_json_from())["type"] == "snapshot"
    after = await scrape()
    labels = {"protocol": "2", "kind": "snapshot"}
    assert (
        value(after, "usersite_frames_sent_total", **labels)
        - value(before, "usersite_frames_sent_total", **labels)
        == 1
    )


async def test_error_frames_are_counted_by_code(scrapable, connect):
    socket = await connect()
    await receive_list(socket)
    before = await scrape()
    for text in ("not json", "{also not", '{"action": "drop"}'):
        await socket.send_to(text_data=text)
        await socket.receive_json_from()
    after = await scrape()
    for code, count in {"invalid_json": 2, "unknown_action": 1, "invalid": 0}.items():
        moved = value(after, "usersite_error_frames_total", code=code) - value(
            before, "usersite_error_frames_total", code=code
        )
        assert moved == count, code


async def test_rate_limited_requests_are_counted_for_the_socket_and_rest(
    scrapable, settings, connect
):
    settings.USERS_SOCKET_CREATE_RATE, settings.USERS_SOCKET_CREATE_BURST = 0.001, 1
    settings.USERS_REST_WRITE_RATE = "1/min"
    settings.USERS_REST_ANONYMOUS_READ_RATE = "1/min"
    socket = await connect()
    await receive_list(socket)
    before = await scrape()
    await socket.send_to(text_data="__addUser__")
    await receive_list(socket)
    await socket.send_to(text_data="__addUser__")
    assert (await socket.receive_json_from())["code"] == "rate_limited"
    rest = AsyncClient()
    statuses = [
        (await rest.post("/api/v1/users", {"name": n}, content_type="application/json")).status_code
        for n in ("Ann", "Bob")
    ]
    assert statuses == [201, 429]
    reads = [(await rest.get("/api/v1/users")).status_code for _ in range(2)]
    assert reads == [200, 429]
    after = await scrape()
    for via in ("socket", "rest", "rest_read"):
        moved = value(after, "usersite_rate_limited_total", via=via) - value(
            before, "usersite_rate_limited_total", via=via
        )
        assert moved == 1, via


async def test_a_version_that_went_missing_counts_a_catch_up(scrapable, connect):
    socket = await connect()
    await receive_list(socket)
    before = await scrape()
    await database_sync_to_async(change_without_broadcast)("Lost")
    assert [user["name"] for user in await receive_list(socket, timeout=5)] == ["Lost"]
    after = await scrape()
    labels = {"reason": "missed_version"}
    assert (
        value(after, "usersite_relay_catch_ups_total", **labels)
        - value(before, "usersite_relay_catch_ups_total", **labels)
        == 1
    )


def test_a_failed_publish_is_counted(scrapable, settings, unused_tcp_port):
    def failures() -> float:
        families = text_string_to_metric_families(Client().get("/metrics").content.decode())
        samples = {s.name: s.value for family in families for s in family.samples}
        return samples["usersite_publish_failures_total"]

    before = failures()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    services.user_create(name="Kept")
    assert User.objects.filter(name="Kept").exists()
    assert failures() - before == 1
