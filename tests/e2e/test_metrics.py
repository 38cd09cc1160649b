"""/metrics of a real uvicorn process, read after real traffic."""

import asyncio
import json

import httpx
from websockets.asyncio.client import connect

from tests.e2e.clients import metric, next_list, rest_create, scrape_metrics, unique_name

TOKEN = "e2e-metrics-token"


async def test_metrics_follow_sockets_changes_and_errors_on_a_real_server(start_server):
    server = start_server("uvicorn", METRICS_TOKEN=TOKEN)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/metrics")).status_code == 404
    before = await scrape_metrics(server, TOKEN)
    v1 = await connect(server.ws_url)
    v2 = await connect(server.ws_url, subprotocols=["users.v2"])
    await next_list(v1)
    assert json.loads(await v2.recv())["type"] == "snapshot"
    samples = await scrape_metrics(server, TOKEN)
    assert metric(samples, "usersite_open_sockets", protocol="1") == 1
    assert metric(samples, "usersite_open_sockets", protocol="2") == 1

    for _ in range(3):
        await rest_create(server, unique_name("counted"))
        await next_list(v1)
        assert json.loads(await v2.recv())["type"] == "changes"
    await v1.send("not json")
    assert json.loads(await v1.recv())["code"] == "invalid_json"
    await v1.close()
    async with asyncio.timeout(5):
        while metric(
            after := await scrape_metrics(server, TOKEN), "usersite_open_sockets", protocol="1"
        ):
            await asyncio.sleep(0.05)

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert metric(after, "usersite_open_sockets", protocol="2") == 1
    assert moved("usersite_frames_sent_total", protocol="1", kind="list") == 4
    assert moved("usersite_frames_sent_total", protocol="2", kind="snapshot") == 1
    assert moved("usersite_frames_sent_total", protocol="2", kind="changes") == 3
    assert moved("usersite_publish_delay_seconds_count") == 3
    assert moved("usersite_fanout_duration_seconds_count") >= 3
    assert moved("usersite_error_frames_total", code="invalid_json") == 1
    assert metric(after, "process_resident_memory_bytes") > 0  # the client's own collectors
    await v2.close()
