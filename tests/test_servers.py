"""The server commands of servers.py."""

from servers import ServerProcess, proxy_options


def test_uvicorn_believes_no_proxy_headers_by_default():
    assert proxy_options({}) == ["--no-proxy-headers"]
    assert proxy_options({"FORWARDED_ALLOW_IPS": " , "}) == ["--no-proxy-headers"]


def test_uvicorn_believes_proxy_headers_from_the_proxies_named():
    env = {"FORWARDED_ALLOW_IPS": "10.0.0.5, 10.0.1.0/24"}
    assert proxy_options(env) == [
        "--proxy-headers",
        "--forwarded-allow-ips",
        "10.0.0.5,10.0.1.0/24",
    ]


def test_only_the_uvicorn_command_carries_the_proxy_options():
    uvicorn = ServerProcess("python", "uvicorn", 8001, {}, None).command
    daphne = ServerProcess("python", "daphne", 8001, {}, None).command
    assert uvicorn[-1] == "--no-proxy-headers"
    assert not any("proxy" in part for part in daphne)
