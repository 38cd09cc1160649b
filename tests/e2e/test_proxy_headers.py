"""
Proxy headers are believed only from the proxies the operator names.

uvicorn's own default trusts them from 127.0.0.1; servers.py turns that off
unless FORWARDED_ALLOW_IPS is set. Requests here come from 127.0.0.1.
"""

import httpx

# Forged or not, two different client addresses and a scheme.
HTTPS = {"X-Forwarded-Proto": "https"}
CLIENT_A = {"X-Forwarded-For": "203.0.113.1"}
CLIENT_B = {"X-Forwarded-For": "203.0.113.2"}

# One anonymous write per address and minute, counted in the process's own
# memory (REDIS_URL empty), so that no other test's counts reach these.
ONE_WRITE = {"USERS_REST_WRITE_RATE": "1/min", "USERS_ANONYMOUS_WRITES": "true", "REDIS_URL": ""}


async def post_user(http: httpx.AsyncClient, headers: dict) -> int:
    response = await http.post("/api/v1/users", json={"name": "Ann"}, headers=headers)
    return response.status_code


async def test_a_forged_x_forwarded_proto_does_not_make_a_request_https(start_server):
    server = start_server("uvicorn", HTTPS="true")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/api/v1/users", headers=HTTPS)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://")


async def test_forged_x_forwarded_for_addresses_share_the_rate_limit_of_the_real_one(
    start_server,
):
    server = start_server("uvicorn", HTTPS="false", **ONE_WRITE)
    async with httpx.AsyncClient(base_url=server.url) as http:
        statuses = [await post_user(http, CLIENT_A), await post_user(http, CLIENT_B)]
    assert statuses == [201, 429]


async def test_a_trusted_proxy_gives_the_scheme_and_the_client_address(start_server):
    server = start_server("uvicorn", HTTPS="true", FORWARDED_ALLOW_IPS="127.0.0.1", **ONE_WRITE)
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/api/v1/users", headers=HTTPS)
        statuses = [
            await post_user(http, {**HTTPS, **CLIENT_A}),
            await post_user(http, {**HTTPS, **CLIENT_B}),
            await post_user(http, {**HTTPS, **CLIENT_A}),
        ]
    assert page.status_code == 200
    assert statuses == [201, 201, 429]
