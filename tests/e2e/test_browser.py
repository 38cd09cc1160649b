"""The live page in headless Chromium (Debian's), driven by Playwright, against a real server."""

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from servers import ROOT
from tests.e2e.clients import unique_name

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own calls home fail on this closed network; keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The page's socket, for page.route_web_socket.
SOCKET_URL = "**/api/v1/users/ws"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("USERSITE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"USERSITE_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
        pytest.skip("needs Chromium (Debian's chromium package) for browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """Open the page, phone-sized; ``route_socket`` (a WebSocketRoute handler) routes its socket."""
    contexts = []

    def open_(url: str, route_socket=None):
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        contexts.append(context)
        page = context.new_page()
        if route_socket:
            # Installed before goto: only sockets opened after this are routed.
            page.route_web_socket(SOCKET_URL, route_socket)
        page.goto(url)
        expect(page.locator("#connection")).to_have_text("Live")
        return page

    yield open_
    for context in contexts:
        context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def user_item(page, name: str):
    return page.locator("#users li", has_text=name)


def test_the_page_shows_the_list_and_a_rest_create_appears_without_reload(
    start_server, open_page, tmp_path
):
    server = start_server("uvicorn")
    before = unique_name("Before")
    httpx.post(f"{server.url}/api/v1/users", json={"name": before, "email": "b@example.org"})
    page = open_page(server.url)
    expect(user_item(page, before)).to_contain_text("b@example.org")
    during = unique_name("Via REST")
    httpx.post(f"{server.url}/api/v1/users", json={"name": during})
    expect(user_item(page, during)).to_be_visible()
    screenshot = os.environ.get("USERSITE_SCREENSHOT") or tmp_path / "page.png"
    page.screenshot(path=screenshot, full_page=True)
    assert os.path.getsize(screenshot) > 0


def test_the_form_adds_a_user_that_appears_in_a_second_page(start_server, open_page):
    server = start_server("uvicorn")
    adding, watching = open_page(server.url), open_page(server.url)
    name = unique_name("Via form")
    adding.get_by_label("Name").fill(name)
    adding.get_by_label("Email").fill("form@example.org")
    adding.get_by_role("button", name="Add").click()
    expect(user_item(watching, name)).to_contain_text("form@example.org")
    expect(adding.get_by_label("Name")).to_have_value("")


def test_an_invalid_email_shows_its_error_next_to_the_field(start_server, open_page):
    server = start_server("uvicorn")
    page = open_page(server.url)
    name = unique_name("Invalid")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill("not-an-address")
    page.get_by_label("Email").press("Enter")
    expect(page.locator("#email-error")).to_contain_text("valid email")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    users = httpx.get(f"{server.url}/api/v1/users").json()["users"]
    assert name not in [user["name"] for user in users]


def test_after_a_server_restart_the_page_reconnects_and_shows_the_current_list(
    start_server, open_page, server_env
):
    server = start_server("uvicorn")
    page = open_page(server.url)
    server.stop()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    name = unique_name("While down")
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         f"from users.models import User; User.objects.create(name={name!r})"],
        cwd=ROOT, env=server_env, check=True,
    )  # fmt: skip
    server.start()
    expect(page.locator("#connection")).to_have_text("Live", timeout=30_000)
    expect(user_item(page, name)).to_be_visible()
