"""End to end in a real browser: Debian's Chromium, driven by Playwright, runs
examples/spa/ from one origin against the real gunicorn on another.

This is the proof that CORS works for a browser, preflights included: the
page sends JSON bodies and an Authorization header, so Chromium asks the API
first (OPTIONS) and reads nothing, not even an error, unless the API allows
the page's origin. Every wait is bounded.
"""
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.helpers import PASSWORD, PROJECT_ROOT, SECRET, clean_environment, npm_ci
from tests.servers import GUNICORN, launch

pytestmark = pytest.mark.e2e

SPA = PROJECT_ROOT / "examples" / "spa"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches for the network beyond 127.0.0.1.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 10_000
LOG_WAIT_SECONDS = 10
# An access token's exp is its whole-second iat plus the TTL, so it lives
# between TTL - 1 and TTL seconds: with a TTL of 1 s, a token fresh from a
# refresh may already be dead when the retry that carries it arrives.
SHORT_ACCESS_TOKEN_TTL = 3


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def spa_origin():
    """examples/spa/ served as static files, the way any web server would."""
    npm_ci(SPA)  # socket.io-client's browser bundle, which index.html loads from node_modules
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=SPA))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def api(tmp_path, spa_origin):
    """The real gunicorn, allowing the page's origin and no other."""
    server = launch(tmp_path, workers=2, CORS_ORIGINS=spa_origin)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed; .ci/run installs it: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile: no storage, no cookies."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()


def logged(server, *texts):
    """The access log once it contains every one of ``texts``, or after LOG_WAIT_SECONDS.

    A gunicorn worker writes a request's line just after sending the answer,
    so a line can still be missing when the browser has already shown it.
    """
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        log = server.access_log()
        if all(text in log for text in texts) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def fill_login(page, username, password):
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)


def open_spa(page, spa_origin, api, cookie=False):
    page.goto(f"{spa_origin}/index.html?api={api.base_url}" + ("&cookie=1" if cookie else ""))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def add_pet(page, name, species=""):
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Species", exact=True).fill(species)
    page.get_by_role("button", name="Add pet").click()


def pet_items(page):
    return page.get_by_role("list", name="Pets").get_by_role("listitem")


def request_lines(lines, *requests):
    """Index of each ``"METHOD /path HTTP/1.1" status`` line of ``lines``, in this order; None if not all are."""
    found = []
    for request in requests:
        start = found[-1] + 1 if found else 0
        index = next((i for i in range(start, len(lines)) if f'"{request[0]} HTTP/1.1" {request[1]}' in lines[i]), None)
        if index is None:
            return None
        found.append(index)
    return found


def in_request_order(log):
    """The lines of one worker's access log in the order the worker took the requests.

    Lines are written after the answers, by whichever thread served each, so
    they may come out of order; the request ids, the worker's prefix and then
    a fixed-width hex counter, do not: a request sent after the answer to
    another has a later id.
    """
    ids = [re.search(r"request_id=(\S+)", line) for line in log.splitlines()]
    assert all(ids), log
    assert len({found.group(1)[:16] for found in ids}) == 1, f"not one worker's log:\n{log}"
    return [found.string for found in sorted(ids, key=lambda found: found.group(1))]


def assert_logged_in_order(server, *requests):
    """The worker served ``requests`` in this order; their lines are waited for, bounded."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        lines = in_request_order(server.access_log())
        if request_lines(lines, *requests) is not None or time.monotonic() > deadline:
            assert request_lines(lines, *requests) is not None, "\n".join(lines)
            return
        time.sleep(0.05)


def test_browser_spa_logs_in_adds_a_pet_reloads_and_logs_out(page, api, spa_origin, tmp_path):
    console = []
    page.on("console", lambda message: console.append(message.text))
    open_spa(page, spa_origin, api)
    alert = page.get_by_role("alert")

    fill_login(page, "travis", PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Signed in as travis")).to_be_visible()
    expect(page.get_by_text("No pets yet.")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(alert).to_have_text("You have logged out.")

    # A 401 from the other origin is readable: the page shows the API's own words.
    fill_login(page, "travis", "not the password")
    page.get_by_role("button", name="Log in").click()
    expect(alert).to_have_text("Incorrect username and/or password.")

    fill_login(page, "travis", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Signed in as travis")).to_be_visible()
    add_pet(page, "Bunny", "dog")
    expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)")])
    add_pet(page, "Rex")
    expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)"), re.compile(r"^Rex")])
    page.get_by_role("button", name="Delete Rex").click()
    expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)")])
    expect(alert).to_be_hidden()

    # The access token was in memory only: the reload renews it with the refresh token.
    page.reload()
    expect(page.get_by_text("Signed in as travis")).to_be_visible()
    expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)")])
    page.screenshot(path=str(tmp_path / "spa.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_role("list", name="Pets")).to_be_hidden()
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_be_hidden()

    # The API holds what the page did; both of the page's sessions ended at its logouts.
    token = api.log_in().access
    assert [pet["name"] for pet in api.call("GET", "/my-pets", token=token).body] == ["Bunny"]
    assert [session["current"] for session in api.call("GET", "/users/me/sessions", token=token).body] == [True]
    # Chromium asked before every kind of call, and the API said yes.
    paths = ("/users", "/auth", "/auth/refresh", "/auth/logout", "/users/me", "/my-pets", "/pets")
    log = logged(api, *[f'"OPTIONS {path} HTTP/1.1" 200' for path in paths], '"POST /auth/refresh HTTP/1.1" 200')
    for path in paths:
        assert f'"OPTIONS {path} HTTP/1.1" 200' in log, log
    assert '"POST /auth/refresh HTTP/1.1" 200' in log
    assert not [text for text in console if "CORS" in text or "Access-Control" in text], console


def test_browser_spa_renews_an_expired_access_token_silently(page, tmp_path, spa_origin):
    # Without live updates (their script does not load), only a 401 tells the page its token expired.
    page.route("**/socket.io.min.js", lambda route: route.abort())
    api = launch(tmp_path, workers=1, CORS_ORIGINS=spa_origin, ACCESS_TOKEN_TTL=str(SHORT_ACCESS_TOKEN_TTL))
    try:
        open_spa(page, spa_origin, api)
        fill_login(page, "travis", PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Signed in as travis")).to_be_visible()
        expect(page.get_by_role("status")).to_have_text(re.compile(r"^Live updates are off"))
        refresh_token = page.evaluate("sessionStorage.getItem('renewal')")

        page.wait_for_timeout((SHORT_ACCESS_TOKEN_TTL + 1) * 1000)  # the access token has expired
        add_pet(page, "Bunny", "dog")
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)")])
        expect(page.get_by_role("alert")).to_be_hidden()
        expect(page.get_by_text("Signed in as travis")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('renewal')") not in (None, refresh_token)
        # Refused, renewed, retried: in that order.
        assert_logged_in_order(api, ("POST /pets", 401), ("POST /auth/refresh", 200), ("POST /pets", 201))
    finally:
        api.stop()


def test_browser_spa_in_cookie_mode_keeps_the_refresh_token_from_scripts(context, page, tmp_path, spa_origin):
    api = launch(tmp_path, workers=1, CORS_ORIGINS=spa_origin, AUTH_COOKIE="true", COOKIE_SECURE="false")
    try:
        open_spa(page, spa_origin, api, cookie=True)
        fill_login(page, "travis", PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Signed in as travis")).to_be_visible()
        [cookie] = [cookie for cookie in context.cookies() if cookie["name"] == "refresh_token"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/auth")
        assert page.evaluate("document.cookie") == ""
        assert page.evaluate("JSON.stringify(sessionStorage)") == '{"renewal":"cookie"}'

        add_pet(page, "Bunny", "dog")
        page.reload()  # renewed with the cookie, sent cross-origin with credentials
        expect(page.get_by_text("Signed in as travis")).to_be_visible()
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny \(dog\)")])

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        assert [cookie for cookie in context.cookies() if cookie["name"] == "refresh_token"] == []
        page.reload()
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        assert '"POST /auth/refresh HTTP/1.1" 200' in logged(api, '"POST /auth/refresh HTTP/1.1" 200')
    finally:
        api.stop()


def test_browser_spa_on_an_origin_the_api_does_not_allow_reads_nothing(page, tmp_path, spa_origin):
    api = launch(tmp_path, workers=1, CORS_ORIGINS="https://app.example.com")
    try:
        open_spa(page, spa_origin, api)
        fill_login(page, "travis", PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("alert")).to_have_text(
            f"The API at {api.base_url} cannot be reached: "
            f"check that it is running and that its CORS_ORIGINS lists {spa_origin}."
        )
        expect(page.get_by_text("Signed in as")).to_be_hidden()
        # Read once the refused preflight is in it, not while the log may still be empty.
        log = logged(api, '"OPTIONS /users HTTP/1.1"')
        assert '"OPTIONS /users HTTP/1.1"' in log
        assert '"POST /users' not in log
    finally:
        api.stop()


def test_browser_docs_page_shows_every_operation_loading_nothing_from_elsewhere(page, tmp_path):
    document = json.loads((PROJECT_ROOT / "jwt_server" / "openapi.json").read_text())
    operations = sorted(
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method != "parameters"
    )
    api = launch(tmp_path, workers=1)
    try:
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{api.base_url}/docs")
        summaries = page.locator(".opblock-summary")
        expect(summaries).to_have_count(len(operations))
        shown = sorted(
            (summary.locator(".opblock-summary-method").inner_text(),
             summary.locator(".opblock-summary-path").get_attribute("data-path"))
            for summary in summaries.all()
        )
        assert shown == operations
        assert f"{api.base_url}/openapi.json" in requested
        assert [url for url in requested if not url.startswith(f"{api.base_url}/")] == []
    finally:
        api.stop()


# Live updates: Socket.IO from the page's origin, which CORS_ORIGINS allows.

FLASK = GUNICORN.with_name("flask")


def expect_live(page):
    expect(page.get_by_role("status")).to_have_text("Live updates are on.", timeout=WAIT_MS)


def sign_in(page, spa_origin, api, button, cookie=False):
    open_spa(page, spa_origin, api, cookie)
    fill_login(page, "travis", PASSWORD)
    page.get_by_role("button", name=button).click()
    expect(page.get_by_text("Signed in as travis")).to_be_visible()
    expect_live(page)


def revoke_sessions_as_administrator(api, username):
    """What an administrator runs on the server's host: ``flask --app wsgi revoke-sessions``."""
    environment = clean_environment(DATABASE_URL=f"sqlite:///{api.database}", JWT_SECRET=SECRET)
    revoked = subprocess.run(
        [str(FLASK), "--app", "wsgi", "revoke-sessions", username],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=30,
    )
    assert revoked.returncode == 0, revoked.stderr


@pytest.mark.parametrize("cookie", [False, True], ids=["body", "cookie"])
def test_browser_two_tabs_update_each_other_live_until_an_administrator_ends_the_sessions(
    context, tmp_path, spa_origin, cookie
):
    api = launch(tmp_path, workers=2, CORS_ORIGINS=spa_origin, AUTH_COOKIE=str(cookie).lower(), COOKIE_SECURE="false")
    try:
        console = []
        first, second, third = context.new_page(), context.new_page(), context.new_page()
        for page in (first, second, third):
            page.on("console", lambda message: console.append(message.text))
        sign_in(first, spa_origin, api, "Create account", cookie)
        sign_in(second, spa_origin, api, "Log in", cookie)
        sign_in(third, spa_origin, api, "Log in", cookie)

        add_pet(first, "Bunny", "dog")
        expect(pet_items(second)).to_have_text([re.compile(r"^Bunny \(dog\)")])
        add_pet(second, "Rex")
        expect(pet_items(first)).to_have_text([re.compile(r"^Bunny \(dog\)"), re.compile(r"^Rex")])
        # Renamed by another client of the API, deleted in the other tab: no reload anywhere.
        token = first.evaluate("accessToken")
        [rex] = [pet for pet in api.call("GET", "/my-pets", token=token).body if pet["name"] == "Rex"]
        assert api.call("PATCH", f"/pets/{rex['id']}", {"name": "Rexy"}, token=token).status == 200
        second.get_by_role("button", name="Delete Bunny").click()
        for page in (first, second, third):
            expect(pet_items(page)).to_have_text([re.compile(r"^Rexy")])

        # Each tab has a session of its own: a logout ends that one only.
        first.get_by_role("button", name="Log out").click()
        expect(first.get_by_role("alert")).to_have_text("You have logged out.")
        second.get_by_role("button", name="Delete Rexy").click()
        expect(third.get_by_text("No pets yet.")).to_be_visible()
        expect_live(third)

        revoke_sessions_as_administrator(api, "travis")
        ended = "Your session has ended (session revoked); please log in again."
        for page in (second, third):
            expect(page.get_by_role("alert")).to_have_text(ended)
            expect(page.get_by_role("button", name="Log in")).to_be_visible()
            expect(page.get_by_role("list", name="Pets")).to_be_hidden()
        expect(first.get_by_role("alert")).to_have_text("You have logged out.")
        assert not [text for text in console if "CORS" in text or "Access-Control" in text], console
    finally:
        for tab in context.pages:
            tab.close()  # their sockets too: gunicorn's graceful stop would wait for them
        api.stop()


# In the page, before its scripts: the answers to the request named by
# sessionStorage's "hold" ("METHOD /path") wait, once read, until release().
HOLD_ANSWERS = """
window.held = [];
const fetchNow = window.fetch;
window.fetch = async (url, init = {}) => {
  const answer = await fetchNow(url, init);
  if (sessionStorage.getItem("hold") === `${init.method} ${new URL(url).pathname}`) {
    await new Promise((resolve) => window.held.push(resolve));
  }
  return answer;
};
window.release = () => {
  sessionStorage.removeItem("hold");
  window.held.splice(0).forEach((resolve) => resolve());
};
"""


def test_browser_an_answer_read_after_a_newer_live_event_does_not_undo_it(page, tmp_path, spa_origin):
    # An answer and another client's change race: here the answer always loses.
    page.add_init_script(HOLD_ANSWERS)
    api = launch(tmp_path, workers=1, CORS_ORIGINS=spa_origin)
    try:
        sign_in(page, spa_origin, api, "Create account")
        token = page.evaluate("accessToken")

        # Added here, renamed elsewhere before this page reads the answer to its POST.
        page.evaluate("sessionStorage.setItem('hold', 'POST /pets')")
        add_pet(page, "Rex")
        page.wait_for_function("held.length === 1")
        expect(pet_items(page)).to_have_text([re.compile(r"^Rex")])  # from its event
        [rex] = api.call("GET", "/my-pets", token=token).body
        assert api.call("PATCH", f"/pets/{rex['id']}", {"name": "Rexy"}, token=token).status == 200
        expect(pet_items(page)).to_have_text([re.compile(r"^Rexy")])
        page.evaluate("release()")
        expect(page.get_by_label("Name", exact=True)).to_have_value("")  # the answer was read
        expect(pet_items(page)).to_have_text([re.compile(r"^Rexy")])

        # Added here, deleted elsewhere before this page reads the answer.
        page.evaluate("sessionStorage.setItem('hold', 'POST /pets')")
        add_pet(page, "Bunny")
        page.wait_for_function("held.length === 1")
        expect(pet_items(page)).to_have_text([re.compile(r"^Rexy"), re.compile(r"^Bunny")])
        bunny = next(pet for pet in api.call("GET", "/my-pets", token=token).body if pet["name"] == "Bunny")
        assert api.call("DELETE", f"/pets/{bunny['id']}", token=token).status == 204
        expect(pet_items(page)).to_have_text([re.compile(r"^Rexy")])
        page.evaluate("release()")
        expect(page.get_by_label("Name", exact=True)).to_have_value("")
        expect(pet_items(page)).to_have_text([re.compile(r"^Rexy")])

        # The list read at a reload, renamed elsewhere before the page reads the answer.
        page.evaluate("sessionStorage.setItem('hold', 'GET /my-pets')")
        page.reload()
        page.wait_for_function("held.length === 1 && socket?.connected")
        assert api.call("PATCH", f"/pets/{rex['id']}", {"name": "Rex II"}, token=token).status == 200
        page.wait_for_function("lastEventId === 5")  # its event came, before the list
        page.evaluate("release()")
        expect(pet_items(page)).to_have_text([re.compile(r"^Rex II")])
        expect(page.get_by_role("alert")).to_be_hidden()
    finally:
        page.close()  # its socket too: gunicorn's graceful stop would wait for it
        api.stop()


def test_browser_live_updates_outlive_the_access_token(page, tmp_path, spa_origin):
    api = launch(tmp_path, workers=1, CORS_ORIGINS=spa_origin, ACCESS_TOKEN_TTL=str(SHORT_ACCESS_TOKEN_TTL))
    try:
        sign_in(page, spa_origin, api, "Create account")
        refresh_token = page.evaluate("sessionStorage.getItem('renewal')")

        page.wait_for_timeout((SHORT_ACCESS_TOKEN_TTL + 1) * 1000)  # the first access token has expired
        expect_live(page)
        token = page.evaluate("accessToken")
        created = api.call("POST", "/pets", {"name": "Bunny"}, token=token)
        assert created.status == 201, created.body
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny")])

        # The socket's token_expired made the page refresh on time: no request was refused.
        assert page.evaluate("sessionStorage.getItem('renewal')") not in (None, refresh_token)
        log = logged(api, '"POST /auth/refresh HTTP/1.1" 200')
        assert '"POST /auth/refresh HTTP/1.1" 200' in log
        assert " 401 " not in log, log
        expect(page.get_by_role("alert")).to_be_hidden()
    finally:
        page.close()  # its socket too: gunicorn's graceful stop would wait for it
        api.stop()


def test_browser_after_a_dropped_connection_the_page_replays_what_it_missed(page, tmp_path, spa_origin):
    api = launch(tmp_path, workers=1, CORS_ORIGINS=spa_origin)
    # A second gunicorn on the same database: it takes the change while the page's server is down.
    other = launch(tmp_path, workers=1, database=api.database, name="other")
    try:
        sign_in(page, spa_origin, api, "Create account")
        add_pet(page, "Bunny")
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny")])
        token = page.evaluate("accessToken")

        [worker] = api.worker_pids()
        os.kill(worker, signal.SIGKILL)  # the socket drops; gunicorn starts another worker
        expect(page.get_by_role("status")).to_have_text("Live updates are reconnecting…")
        assert other.call("POST", "/pets", {"name": "Rex"}, token=token).status == 201

        # The new worker had not seen Rex's event live: the page asked for it with last_event_id.
        expect_live(page)
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny"), re.compile(r"^Rex")])
        expect(page.get_by_role("alert")).to_be_hidden()
    finally:
        page.close()  # its socket too: gunicorn's graceful stop would wait for it
        other.stop()
        api.stop()


def test_browser_a_page_that_missed_more_than_the_server_keeps_reloads_its_list(page, tmp_path, spa_origin):
    settings = {"CORS_ORIGINS": spa_origin, "REALTIME_REPLAY_SECONDS": "1"}
    api = launch(tmp_path, workers=1, **settings)
    other = launch(tmp_path, workers=1, database=api.database, name="other")
    restarted = None
    try:
        sign_in(page, spa_origin, api, "Create account")
        add_pet(page, "Bunny")
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny")])
        token = page.evaluate("accessToken")

        # The page's server is down until Rex's event is older than the one second kept.
        api.stop(signal.SIGQUIT)  # at once: a graceful stop would wait for the open socket
        expect(page.get_by_role("status")).to_have_text("Live updates are reconnecting…")
        assert other.call("POST", "/pets", {"name": "Rex"}, token=token).status == 201
        time.sleep(2.5)
        port = int(api.base_url.rsplit(":", 1)[1])
        restarted = launch(tmp_path, workers=1, database=api.database, name="restarted", port=port, **settings)

        # Neither live (the server started after it) nor replayed: Rex shows because
        # replay_incomplete made the page reload its list.
        expect_live(page)
        expect(pet_items(page)).to_have_text([re.compile(r"^Bunny"), re.compile(r"^Rex")])
    finally:
        page.close()  # its socket too: gunicorn's graceful stop would wait for it
        for server in (restarted, other, api):
            if server:
                server.stop()
