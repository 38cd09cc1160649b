"""The live page in headless Chromium (Debian's), driven by Playwright, against a real server."""

import os
import shutil
import subprocess
import sys
import uuid

import httpx
import pytest

from servers import ROOT, SOCKET_PATH
from tests.e2e.clients import unique_name

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own calls home fail on this closed network; keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The page's socket, for page.route_web_socket.
SOCKET_URL = f"**{SOCKET_PATH}"


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


class HoldingRelay:
    """
    A WebSocket route that relays the page's socket to the server but holds
    what the page sends until ``release()``: the test decides whether the
    page's create or another client's change reaches the page first.
    """

    def __init__(self):
        self.held, self.server, self.page_side = [], None, None

    def __call__(self, ws) -> None:
        # Called again for the socket the page opens when it reconnects.
        self.page_side, self.server = ws, ws.connect_to_server()
        ws.on_message(lambda frame: self.held.append(frame))

    def wait_for_frame(self, page, timeout_ms: int = 5000) -> None:
        # The route's callbacks run only while Playwright waits, so wait in small steps.
        for _ in range(timeout_ms // 20):
            if self.held:
                return
            page.wait_for_timeout(20)
        raise AssertionError("the page sent nothing")

    def release(self) -> None:
        for frame in self.held:
            self.server.send(frame)
        self.held.clear()

    def drop_connection(self) -> None:
        """Lose the held frames and close both sides, as a network failure would."""
        self.held.clear()
        self.server.close()
        self.page_side.close()


@pytest.fixture
def held_page(start_server, open_page):
    """A server, and a page on it whose sends a HoldingRelay holds: (server, relay, page)."""
    server = start_server("uvicorn")
    relay = HoldingRelay()
    return server, relay, open_page(server.url, route_socket=relay)


def submit_and_hold(page, relay: HoldingRelay, name: str, email: str) -> None:
    """Fill the form and submit it; return once the relay holds the page's create."""
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Add").click()
    relay.wait_for_frame(page)


def another_client_adds_a_user(page, server) -> None:
    """Add a user through REST and wait until the page shows it."""
    other = unique_name("Someone else")
    httpx.post(f"{server.url}/api/v1/users", json={"name": other}).raise_for_status()
    expect(user_item(page, other)).to_be_visible()


def expect_form(page, name: str, email: str) -> None:
    expect(page.get_by_label("Name")).to_have_value(name)
    expect(page.get_by_label("Email")).to_have_value(email)


def test_another_clients_change_during_a_submit_leaves_the_form_until_its_own_user_appears(
    held_page,
):
    server, relay, page = held_page
    name, email = unique_name("Mine"), f"{uuid.uuid4().hex[:8]}@example.org"
    submit_and_hold(page, relay, f"  {name} ", email)
    another_client_adds_a_user(page, server)
    expect_form(page, f"  {name} ", email)
    relay.release()
    expect(user_item(page, name)).to_contain_text(email)
    expect_form(page, "", "")


def test_an_error_after_another_clients_change_shows_next_to_the_kept_input(held_page):
    server, relay, page = held_page
    taken = f"taken-{uuid.uuid4().hex[:8]}@example.org"
    httpx.post(
        f"{server.url}/api/v1/users", json={"name": "Owner", "email": taken}
    ).raise_for_status()
    name = unique_name("Duplicate")
    submit_and_hold(page, relay, name, taken)
    another_client_adds_a_user(page, server)
    expect_form(page, name, taken)
    relay.release()
    expect(page.locator("#email-error")).to_contain_text("already exists")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect_form(page, name, taken)


def test_typing_after_a_submit_is_kept_when_the_submitted_user_appears(held_page):
    _, relay, page = held_page
    name = unique_name("Sent")
    submit_and_hold(page, relay, name, "")
    page.get_by_label("Name").fill("The next one")
    relay.release()
    expect(user_item(page, name)).to_be_visible()
    expect_form(page, "The next one", "")


def test_a_submit_lost_with_its_socket_can_be_sent_again_after_the_reconnect(held_page):
    server, relay, page = held_page
    name = unique_name("Lost")
    submit_and_hold(page, relay, name, "")
    relay.drop_connection()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    expect(page.locator("#connection")).to_have_text("Live")
    another_client_adds_a_user(page, server)
    expect_form(page, name, "")
    expect(page.get_by_role("button", name="Add")).to_be_enabled()
    page.get_by_role("button", name="Add").click()
    relay.wait_for_frame(page)
    relay.release()
    expect(user_item(page, name)).to_be_visible()
    expect_form(page, "", "")
