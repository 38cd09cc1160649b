"""The live page in headless Chromium (Debian's), driven by Playwright, against a real server."""

import json
import os
import shutil
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from servers import SOCKET_PATH
from tests.e2e.clients import (
    database_of_numbered_users,
    manage_shell,
    unique_name,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own calls home fail on this closed network; keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def is_socket_url(url: str) -> bool:
    """The page's socket, with or without the query that resumes it (for page.route_web_socket)."""
    return urlsplit(url).path == SOCKET_PATH


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
    """
    Open the page, phone-sized, and wait for its list; ``prepare(page)`` runs
    before it loads (to route or watch its socket).
    """
    contexts = []

    def open_(url: str, prepare=None, live_timeout_ms: int = 5000):
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        contexts.append(context)
        page = context.new_page()
        if prepare:
            prepare(page)
        page.goto(url)
        expect(page.locator("#connection")).to_have_text("Live", timeout=live_timeout_ms)
        # New users join the list at its end, where the tests look for them.
        page.evaluate("() => { const view = document.getElementById('users-view'); "
                      "view.scrollTop = view.scrollHeight; }")  # fmt: skip
        return page

    yield open_
    for context in contexts:
        context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def user_item(page, name: str):
    return page.locator("#users li", has_text=name)


def rest_create(server, name: str, email: str = "") -> dict:
    """Create a user through REST: clients.rest_create for Playwright's synchronous API."""
    response = httpx.post(f"{server.url}/api/v1/users", json={"name": name, "email": email})
    response.raise_for_status()
    return response.json()


def rest_rename(server, user_id: str, name: str) -> None:
    response = httpx.patch(f"{server.url}/api/v1/users/{user_id}", json={"name": name})
    response.raise_for_status()


def rest_users(server) -> list:
    return httpx.get(f"{server.url}/api/v1/users").json()["users"]


# Every row of the list, read one view at a time. Dispatching the scroll event
# renders at once, where the browser's own would wait for the next frame; the
# view is aria-busy until the window holding its rows has come.
READ_EVERY_ROW = """async () => {
  const view = document.getElementById("users-view");
  const rows = new Map();
  for (let top = 0; ; top += view.clientHeight) {
    view.scrollTop = top;
    view.dispatchEvent(new Event("scroll"));
    for (let waited = 0; view.getAttribute("aria-busy") === "true"; waited += 10) {
      if (waited > 10000) throw new Error(`no window for the rows at ${top} px`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const row of document.querySelectorAll("#users li")) {
      const text = (selector) => row.querySelector(selector).textContent;
      rows.set(Number(row.getAttribute("aria-posinset")),
               { id: row.dataset.id, name: text(".name"), email: text(".email") });
    }
    if (top + view.clientHeight >= view.scrollHeight) break;
  }
  return [...rows].sort(([a], [b]) => a - b).map(([, row]) => row);
}"""


# 200 scroll positions from the top to 70% of the list, 5 ms apart.
DRAG_ACROSS_THE_LIST = """async () => {
  const view = document.getElementById("users-view");
  for (let step = 1; step <= 200; step++) {
    view.scrollTop = (view.scrollHeight * 0.7 * step) / 200;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}"""


def page_rows(page) -> list:
    """The users the page shows, in order, as REST answers them."""
    return page.evaluate(READ_EVERY_ROW)


def test_the_page_shows_the_list_and_applies_rest_creates_updates_and_deletes_live(
    start_server, open_page, tmp_path
):
    server = start_server("uvicorn")
    kept = rest_create(server, unique_name("Kept"), "kept@example.org")
    renamed = rest_create(server, unique_name("To rename"))
    deleted = rest_create(server, unique_name("To delete"))
    page = open_page(server.url)
    expect(user_item(page, kept["name"])).to_contain_text("kept@example.org")
    # Rows the page renders again get new elements, without this mark.
    page.locator("#users li").evaluate_all("rows => rows.forEach((row) => row.dataset.seen = '')")

    created = rest_create(server, unique_name("Via REST"))
    new_name = unique_name("Renamed")
    httpx.patch(f"{server.url}/api/v1/users/{renamed['id']}", json={"name": new_name})
    httpx.delete(f"{server.url}/api/v1/users/{deleted['id']}").raise_for_status()

    expect(user_item(page, created["name"])).to_be_visible()
    expect(user_item(page, new_name)).to_be_visible()
    expect(user_item(page, deleted["name"])).to_have_count(0)
    expect(user_item(page, kept["name"])).to_have_attribute("data-seen", "")
    assert page_rows(page) == rest_users(server)
    screenshot = os.environ.get("USERSITE_SCREENSHOT") or tmp_path / "page.png"
    page.screenshot(path=screenshot, full_page=True)
    assert os.path.getsize(screenshot) > 0


class ReceivedFrames:
    """Record the frames each socket of a page receives, decoded, and their bytes."""

    def __init__(self):
        self.sockets = []  # {"url", "frames", "bytes"}, one per socket the page opened

    def watch(self, page) -> None:
        page.on("websocket", self.opened)

    def opened(self, ws) -> None:
        record = {"url": ws.url, "frames": [], "bytes": 0}
        self.sockets.append(record)

        def received(payload) -> None:
            record["frames"].append(json.loads(payload))
            record["bytes"] += len(payload.encode() if isinstance(payload, str) else payload)

        ws.on("framereceived", received)

    @property
    def total_bytes(self) -> int:
        return sum(record["bytes"] for record in self.sockets)


def test_after_a_server_restart_the_page_resumes_its_window_with_only_what_changed(
    start_server, open_page, server_env
):
    server = start_server("uvicorn")
    received = ReceivedFrames()
    page = open_page(server.url, prepare=received.watch)
    assert received.sockets[0]["frames"][0]["type"] == "snapshot"

    server.stop()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    opened_before_restart = len(received.sockets)
    made_while_down = unique_name("While down")
    manage_shell(server_env, f"User.objects.create(name={made_while_down!r})")
    server.start()
    expect(page.locator("#connection")).to_have_text("Live", timeout=30_000)
    expect(user_item(page, made_while_down)).to_be_visible()
    made_after = rest_create(server, unique_name("After the restart"))
    expect(user_item(page, made_after["name"])).to_be_visible()

    after_restart = received.sockets[opened_before_restart:]
    assert all("epoch=" in s["url"] and "version=" in s["url"] for s in after_restart)
    first_frames = [socket["frames"][0] for socket in after_restart if socket["frames"]]
    assert [frame["type"] for frame in first_frames] == ["changes"], "resumed, not downloaded again"
    assert page_rows(page) == rest_users(server)


def test_scrolling_through_100000_users_moves_a_window_and_never_downloads_the_list(
    start_server, open_page, server_env, tmp_path
):
    server = start_server("uvicorn", **database_of_numbered_users(server_env, tmp_path, 100_000))
    received = ReceivedFrames()
    page = open_page(server.url, prepare=received.watch, live_timeout_ms=20_000)
    expect(page.locator("#count")).to_have_text("(100000)")
    view = page.locator("#users-view")
    rows = page.locator("#users li")

    view.press("End")
    expect(page.get_by_text("User 100000", exact=True)).to_be_in_viewport()
    assert 0 < rows.count() < 100
    view.press("Home")
    expect(page.get_by_text("User 1", exact=True)).to_be_in_viewport()
    expect(page.get_by_text("User 100000", exact=True)).to_have_count(0)

    # A scrollbar dragged across the list: the page ends on the window in view,
    # having asked for no more windows than the server takes.
    page.evaluate(DRAG_ACROSS_THE_LIST)
    expect(view).to_have_attribute("aria-busy", "false")
    shown = rows.evaluate_all(
        "rows => rows.map((row) => [row.getAttribute('aria-posinset'), row.dataset.id])"
    )
    assert len(shown) > 10
    assert all(place == user_id for place, user_id in shown), shown
    errors = [f for socket in received.sockets for f in socket["frames"] if f["type"] == "error"]
    assert errors == []

    rest_create(server, "User 100001")
    expect(page.locator("#count")).to_have_text("(100001)")
    view.press("End")
    expect(page.get_by_text("User 100001", exact=True)).to_be_in_viewport()

    # By name, "User 99999" comes last; reversed, "User 1" does (before "User 10").
    page.get_by_role("button", name="Name", exact=True).click()
    expect(page.get_by_text("User 1", exact=True)).to_be_in_viewport()
    view.press("End")
    expect(page.get_by_text("User 99999", exact=True)).to_be_in_viewport()
    page.get_by_role("button", name="Name", exact=True).click()
    view.press("End")
    expect(page.get_by_text("User 1", exact=True)).to_be_in_viewport()
    assert 0 < rows.count() < 100
    # The whole list is some 4.5 MB; the windows shown were a few kilobytes each.
    assert received.total_bytes < 300_000, received.total_bytes
    lists = [f for socket in received.sockets for f in socket["frames"] if "epoch" in f]
    assert all("total" in frame for frame in lists)


def test_a_search_narrows_the_list_which_stays_live_and_sorts_by_column(start_server, open_page):
    server = start_server("uvicorn")
    word = uuid.uuid4().hex[:10]
    ann = rest_create(server, f"Ann {word}")
    bob = rest_create(server, f"bob {word}")
    other = rest_create(server, unique_name("Other"))
    page = open_page(server.url)
    expect(user_item(page, other["name"])).to_have_count(1)

    page.get_by_label("Search").fill(word)
    expect(page.locator("#count")).to_have_text("(2 matching)")
    expect(user_item(page, other["name"])).to_have_count(0)
    cy = rest_create(server, f"Cy {word}")
    expect(user_item(page, cy["name"])).to_be_visible()
    new_name = unique_name("Renamed")
    rest_rename(server, bob["id"], new_name)
    expect(user_item(page, bob["name"])).to_have_count(0)
    expect(user_item(page, new_name)).to_have_count(0)
    rest_create(server, unique_name("Unrelated"))
    expect(page.locator("#count")).to_have_text("(2 matching)")
    assert [row["id"] for row in page_rows(page)] == [ann["id"], cy["id"]]

    def shown_ids() -> list:
        return page.locator("#users li").evaluate_all("rows => rows.map((row) => row.dataset.id)")

    alice_id = rest_create(server, f"alice {word}")["id"]  # before "Ann": A-Z compare lowercased
    expect(page.locator("#count")).to_have_text("(3 matching)")
    by_id = page.get_by_role("button", name="Id", exact=True)
    by_name = page.get_by_role("button", name="Name", exact=True)
    by_name.click()
    expect(by_name).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#users li").first).to_have_attribute("data-id", alice_id)
    assert shown_ids() == [alice_id, ann["id"], cy["id"]]
    by_name.click()
    expect(page.locator("#users li").first).to_have_attribute("data-id", cy["id"])
    assert shown_ids() == [cy["id"], ann["id"], alice_id]
    by_id.click()
    expect(page.locator("#users li").first).to_have_attribute("data-id", ann["id"])
    by_id.click()
    expect(page.locator("#users li").first).to_have_attribute("data-id", alice_id)

    page.get_by_label("Search").fill("")
    expect(user_item(page, other["name"])).to_have_count(1)
    expect(page.locator("#count")).not_to_contain_text("matching")


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
    assert name not in [user["name"] for user in rest_users(server)]


class HoldingRelay:
    """
    A WebSocket route that relays the page's socket to the server but holds
    the commands the page sends until ``release()``, and the server's frames
    of the types in ``hold_types`` (but answers to query changes) until
    ``release_to_page()``: the test decides in what order the page gets its
    answers and other clients' changes.
    """

    def __init__(self):
        self.held, self.held_for_page, self.urls = [], [], []
        self.hold_types = set()
        self.server = self.page_side = None
        self.holds = None  # (epoch, version) of the newest list frame passed to the page

    def install(self, page) -> None:
        page.route_web_socket(is_socket_url, self.route)

    def route(self, ws) -> None:
        # Called again for the socket the page opens when it reconnects.
        self.page_side, self.server = ws, ws.connect_to_server()
        self.urls.append(ws.url)
        ws.on_message(lambda frame: self.from_page(frame))
        self.server.on_message(lambda frame: self.from_server(ws, frame))

    def from_page(self, frame: str) -> None:
        # Query changes (the page sends one when it scrolls) pass: only commands are held.
        if json.loads(frame).get("action") == "query":
            self.server.send(frame)
        else:
            self.held.append(frame)

    def from_server(self, page_side, frame: str) -> None:
        content = json.loads(frame)
        if content["type"] in self.hold_types and "query" not in content:
            self.held_for_page.append(frame)
            return
        if content["type"] in ("snapshot", "changes"):
            self.holds = (content["epoch"], content["version"])
        page_side.send(frame)

    def wait_until(self, page, condition, what: str, timeout_ms: int = 5000) -> None:
        # The route's callbacks run only while Playwright waits, so wait in small steps.
        for _ in range(timeout_ms // 20):
            if condition():
                return
            page.wait_for_timeout(20)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_for_frame(self, page) -> None:
        self.wait_until(page, lambda: self.held, "the page to send a frame")

    def release(self) -> None:
        for frame in self.held:
            self.server.send(frame)
        self.held.clear()

    def release_to_page(self) -> None:
        for frame in self.held_for_page:
            self.page_side.send(frame)
        self.held_for_page.clear()

    def send_to_page(self, content: dict) -> None:
        self.page_side.send(json.dumps(content))

    def drop_connection(self) -> None:
        """Lose the held frames and close both sides, as a network failure would."""
        self.held.clear()
        self.held_for_page.clear()
        self.server.close()
        self.page_side.close()


@pytest.fixture
def held_page(start_server, open_page):
    """A server, and a page on it whose sends a HoldingRelay holds: (server, relay, page)."""
    server = start_server("uvicorn")
    relay = HoldingRelay()
    return server, relay, open_page(server.url, prepare=relay.install)


def submit_and_hold(page, relay: HoldingRelay, name: str, email: str) -> dict:
    """Fill the form and submit it; return the page's create once the relay holds it."""
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Add").click()
    relay.wait_for_frame(page)
    return json.loads(relay.held[-1])


def another_client_adds_a_user(page, server) -> None:
    """Add a user through REST and wait until the page shows it."""
    other = unique_name("Someone else")
    rest_create(server, other)
    expect(user_item(page, other)).to_be_visible()


def expect_form(page, name: str, email: str) -> None:
    expect(page.get_by_label("Name")).to_have_value(name)
    expect(page.get_by_label("Email")).to_have_value(email)


def test_a_submit_sends_a_create_with_a_new_request_id_each_time(held_page):
    _, relay, page = held_page
    first = submit_and_hold(page, relay, unique_name("First"), "")
    relay.release()
    expect_form(page, "", "")
    second = submit_and_hold(page, relay, unique_name("Second"), "")
    assert first.keys() == second.keys() == {"action", "name", "email", "request_id"}
    assert first["action"] == "create"
    assert first["request_id"] != second["request_id"]
    assert uuid.UUID(first["request_id"]).version == uuid.UUID(second["request_id"]).version == 4


def test_the_form_resets_on_its_ack_not_on_the_change_that_carries_its_user(held_page):
    _, relay, page = held_page
    relay.hold_types = {"ack"}
    name = unique_name("Acked")
    submit_and_hold(page, relay, name, "")
    relay.release()
    expect(user_item(page, name)).to_be_visible()
    expect_form(page, name, "")
    expect(page.get_by_role("button", name="Add")).to_be_disabled()
    relay.release_to_page()
    expect_form(page, "", "")
    expect(page.get_by_role("button", name="Add")).to_be_enabled()


def test_an_ack_before_the_change_that_carries_its_user_resets_the_form(held_page):
    _, relay, page = held_page
    relay.hold_types = {"changes"}
    name = unique_name("Acked first")
    submit_and_hold(page, relay, name, "")
    relay.release()
    expect_form(page, "", "")
    expect(user_item(page, name)).to_have_count(0)
    relay.hold_types = set()
    relay.release_to_page()
    expect(user_item(page, name)).to_have_count(1)


def test_other_clients_changes_and_answers_to_other_requests_leave_a_pending_submit(held_page):
    server, relay, page = held_page
    name, email = unique_name("Mine"), f"{uuid.uuid4().hex[:8]}@example.org"
    submit_and_hold(page, relay, f"  {name} ", email)
    someone = {"id": "1", "name": "Someone", "email": ""}
    relay.send_to_page({"type": "ack", "request_id": "another-request", "user": someone})
    relay.send_to_page(
        {"type": "error", "code": "invalid", "message": "Nothing was changed.",
         "errors": {"email": ["Not this form's."]}, "request_id": "another-request"}
    )  # fmt: skip
    # The server's frames reach the page after those: once it shows the user, it has read them.
    another_client_adds_a_user(page, server)
    expect_form(page, f"  {name} ", email)
    expect(page.locator("#email-error")).to_be_empty()
    relay.release()
    expect(user_item(page, name)).to_contain_text(email)
    expect_form(page, "", "")


def test_an_error_after_another_clients_change_shows_next_to_the_kept_input(held_page):
    server, relay, page = held_page
    taken = f"taken-{uuid.uuid4().hex[:8]}@example.org"
    rest_create(server, "Owner", taken)
    name = unique_name("Duplicate")
    submit_and_hold(page, relay, name, taken)
    another_client_adds_a_user(page, server)
    expect_form(page, name, taken)
    relay.release()
    expect(page.locator("#email-error")).to_contain_text("already exists")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect_form(page, name, taken)


def test_typing_after_a_submit_is_kept_when_its_ack_arrives(held_page):
    _, relay, page = held_page
    name = unique_name("Sent")
    submit_and_hold(page, relay, name, "")
    page.get_by_label("Name").fill("The next one")
    relay.release()
    expect(user_item(page, name)).to_be_visible()
    expect(page.get_by_role("button", name="Add")).to_be_enabled()
    expect_form(page, "The next one", "")


def test_a_submit_lost_with_its_socket_is_sent_again_after_the_reconnect(held_page):
    _, relay, page = held_page
    name = unique_name("Lost")
    sent = submit_and_hold(page, relay, name, "")
    relay.drop_connection()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    relay.wait_for_frame(page)
    assert json.loads(relay.held[-1]) == sent
    relay.release()
    expect(user_item(page, name)).to_be_visible()
    expect_form(page, "", "")


def test_a_submit_whose_ack_was_lost_is_sent_again_and_makes_one_user(held_page):
    server, relay, page = held_page
    relay.hold_types = {"ack"}
    name = unique_name("Made once")
    sent = submit_and_hold(page, relay, name, "")
    relay.release()
    relay.wait_until(page, lambda: relay.held_for_page, "the server's ack")
    relay.drop_connection()
    relay.hold_types = set()
    relay.wait_for_frame(page)
    assert json.loads(relay.held[-1]) == sent
    relay.release()
    expect_form(page, "", "")
    assert [user["name"] for user in rest_users(server)].count(name) == 1
    expect(user_item(page, name)).to_have_count(1)


@pytest.mark.parametrize("mismatch", ["a version gap", "another epoch"])
def test_changes_that_do_not_follow_the_list_shown_make_the_page_take_the_whole_list(
    held_page, mismatch
):
    server, relay, page = held_page
    epoch, version = relay.holds
    ghost = {"id": "999999999", "name": unique_name("Ghost"), "email": ""}
    changes = {"type": "changes", "epoch": epoch, "from": version, "version": version + 1,
               "upserted": [ghost], "deleted": []}  # fmt: skip
    if mismatch == "a version gap":
        changes.update({"from": version + 1, "version": version + 2})
    else:
        changes["epoch"] = "another-epoch"
    relay.send_to_page(changes)
    relay.wait_until(page, lambda: len(relay.urls) == 2, "the page to reconnect")
    assert "epoch=" not in relay.urls[-1]
    expect(page.locator("#connection")).to_have_text("Live")
    another_client_adds_a_user(page, server)
    expect(user_item(page, ghost["name"])).to_have_count(0)
    assert page_rows(page) == rest_users(server)
