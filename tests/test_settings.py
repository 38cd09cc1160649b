"""Production settings: refused without their secrets, and clean under ``check --deploy``."""

import os
import secrets
import subprocess
import sys

import pytest

from servers import ROOT

PRODUCTION_ENV = ROOT / "docs" / "production.env"


def documented_production_env() -> dict:
    """The variables of docs/production.env, with a fresh SECRET_KEY filled in."""
    variables = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name] = value
    return {**variables, "SECRET_KEY": secrets.token_urlsafe(50)}


def manage(*command: str, env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_with_debug_off_the_settings_refuse_to_load_without(missing):
    env = {**documented_production_env(), missing: ""}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is off" in result.stderr


def test_check_deploy_passes_with_the_documented_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=documented_production_env())
    assert result.returncode == 0, result.stderr


def test_check_deploy_fails_when_https_is_off_in_production():
    env = {**documented_production_env(), "HTTPS": "false"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stderr


def test_a_public_host_without_an_explicit_debug_refuses_to_load():
    result = manage("check", env={"ALLOWED_HOSTS": "localhost,users.example.org"})
    assert result.returncode != 0
    assert "set DEBUG=false" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"ALLOWED_HOSTS": "localhost,127.0.0.2,::1,[::1]"},
        {"ALLOWED_HOSTS": "users.example.org", "DEBUG": "true"},
    ],
    ids=["loopback hosts only", "debug chosen explicitly"],
)
def test_the_settings_load_when_debug_is_explicit_or_the_hosts_are_loopback(env):
    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr


def test_log_level_holds_for_uvicorns_per_connection_lines():
    show = (
        "import logging; print(logging.getLogger('uvicorn.error').isEnabledFor(logging.INFO),"
        " logging.getLogger('users').isEnabledFor(logging.INFO))"
    )
    quiet = manage("shell", "-v", "0", "-c", show, env={"LOG_LEVEL": "WARNING"})
    assert quiet.stdout.split() == ["False", "False"], quiet.stderr
    assert manage("shell", "-v", "0", "-c", show, env={}).stdout.split() == ["True", "True"]
