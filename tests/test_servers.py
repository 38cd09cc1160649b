"""The server commands of servers.py."""

import sys

from servers import ServerProcess, main, proxy_options


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


def test_run_as_a_program_it_becomes_the_uvicorn_command_of_its_environment(monkeypatch):
    executed = []
    monkeypatch.setattr("os.execv", lambda path, argv: executed.append(argv))
    monkeypatch.setattr("os.chdir", lambda path: None)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")
    monkeypatch.setenv("SERVER_MAX_CONNECTIONS", "500")
    main(["--port", "8002"])
    expected = ServerProcess(
        sys.executable,
        "uvicorn",
        8002,
        {"SERVER_MAX_CONNECTIONS": "500", "FORWARDED_ALLOW_IPS": "127.0.0.1"},
        None,
    ).command
    assert executed == [expected]
    assert expected[-3:] == ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    assert "500" in expected
