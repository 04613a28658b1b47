"""Defects found by attacking the running service, each pinned by a test.

Races are made deterministic: a request is held inside its bcrypt check (a
wrapped ``bcrypt.checkpw`` waits on an event in that request's thread only)
while the competing change runs to completion, then let go.
"""
import json
import sqlite3
import threading
from contextlib import closing, contextmanager

import bcrypt
import pytest

from jwt_server import pets as pets_module
from tests.helpers import PASSWORD, assert_problem, can_log_in, log_in, open_database, register

NEW_PASSWORD = "a brand new passphrase"
WRONG = "not the password at all"
APP_ORIGIN = "https://app.example"
CSRF_HEADER = {"X-Requested-With": "XMLHttpRequest"}
WAIT_SECONDS = 10


def rows(app, sql, *parameters):
    with closing(open_database(app.config["DATABASE"])) as database:
        return [tuple(row) for row in database.execute(sql, parameters).fetchall()]


def write(app, sql, *parameters):
    with closing(open_database(app.config["DATABASE"])) as database:
        if isinstance(database, sqlite3.Connection):
            database.execute("PRAGMA foreign_keys = ON")
        database.execute(sql, parameters)
        database.commit()



def audit_events(text):
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" in line]


@contextmanager
def held_in_bcrypt(monkeypatch, thread_name):
    """Hold the request running in ``thread_name`` right after its first bcrypt check.

    Yields ``(checked, release)``: ``checked`` is set once that thread has
    checked its password; it then waits until ``release`` is set.
    """
    checked, release = threading.Event(), threading.Event()
    real_checkpw = bcrypt.checkpw

    def checkpw(password, hashed):
        result = real_checkpw(password, hashed)
        if threading.current_thread().name == thread_name and not checked.is_set():
            checked.set()
            release.wait(WAIT_SECONDS)
        return result

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    try:
        yield checked, release
    finally:
        release.set()


class Racing(threading.Thread):
    """One request in a thread of its own, with its own test client."""

    def __init__(self, app, method, path, **kwargs):
        super().__init__(name=f"racing-{method}-{path}", daemon=True)
        self.client, self.method, self.path, self.kwargs = app.test_client(), method, path, kwargs
        self.response = None

    def run(self):
        self.response = self.client.open(self.path, method=self.method, **self.kwargs)

    def finish(self):
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "the racing request never finished"
        return self.response


def race(app, monkeypatch, racing_kwargs, competitor):
    """Run a request until it has checked its password, run ``competitor()``, then let the request finish."""
    racer = Racing(app, "POST", "/auth", **racing_kwargs)
    with held_in_bcrypt(monkeypatch, racer.name) as (checked, release):
        racer.start()
        assert checked.wait(WAIT_SECONDS), "the racing login never reached bcrypt"
        competitor()
        release.set()
        return racer.finish()


def live_sessions(app, user_id):
    return rows(app, "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL", user_id)


# 1. A password change cannot be undone by a login that verified the old password


def test_login_that_verified_the_old_password_during_a_change_gets_no_session(app, monkeypatch):
    client = app.test_client()
    user = register(client)
    headers = log_in(client).headers
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    def change_password():
        assert client.put("/users/me/password", json=change, headers=headers).status_code == 204

    response = race(app, monkeypatch, {"json": {"username": "travis", "password": PASSWORD}}, change_password)

    assert_problem(response, 401, "invalid_credentials")
    assert response.get_json()["detail"] == "Incorrect username and/or password."
    assert [row[0] for row in live_sessions(app, user["id"])] == [1]  # the changer's own session only
    assert can_log_in(client, "travis", NEW_PASSWORD)
    assert not can_log_in(client, "travis", PASSWORD)


def test_login_during_set_password_command_gets_no_session(app, monkeypatch):
    client = app.test_client()
    user = register(client)
    runner = app.test_cli_runner()

    def set_password():
        result = runner.invoke(args=["set-password", "travis"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
        assert result.exit_code == 0, result.output

    response = race(app, monkeypatch, {"json": {"username": "travis", "password": PASSWORD}}, set_password)

    assert_problem(response, 401, "invalid_credentials")
    assert live_sessions(app, user["id"]) == []
    assert can_log_in(client, "travis", NEW_PASSWORD)
    assert not can_log_in(client, "travis", PASSWORD)


def test_login_rehashing_an_old_cost_hash_cannot_put_the_old_password_back(make_app, monkeypatch):
    app = make_app(BCRYPT_ROUNDS=5)
    client = app.test_client()
    user = register(client)
    old_cost_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    write(app, "UPDATE users SET password_hash = ? WHERE id = ?", old_cost_hash, user["id"])
    runner = app.test_cli_runner()

    def set_password():
        assert runner.invoke(args=["set-password", "travis"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n").exit_code == 0

    response = race(app, monkeypatch, {"json": {"username": "travis", "password": PASSWORD}}, set_password)

    assert_problem(response, 401, "invalid_credentials")
    [(stored,)] = rows(app, "SELECT password_hash FROM users WHERE id = ?", user["id"])
    assert bcrypt.checkpw(NEW_PASSWORD.encode(), stored.encode())
    assert not can_log_in(client, "travis", PASSWORD)
    assert can_log_in(client, "travis", NEW_PASSWORD)


def test_a_password_change_verified_against_a_password_changed_meanwhile_is_refused(app, monkeypatch):
    client = app.test_client()
    register(client)
    attacker = log_in(client).headers
    runner = app.test_cli_runner()
    racer = Racing(
        app, "PUT", "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "the attacker's password"}, headers=attacker,
    )
    with held_in_bcrypt(monkeypatch, racer.name) as (checked, release):
        racer.start()
        assert checked.wait(WAIT_SECONDS)
        assert runner.invoke(args=["set-password", "travis"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n").exit_code == 0
        release.set()
        response = racer.finish()

    assert response.status_code in (401, 403), response.get_data(as_text=True)
    assert can_log_in(client, "travis", NEW_PASSWORD)
    assert not can_log_in(client, "travis", "the attacker's password")


# 2. Wrong passwords at the password routes count against the login throttle


PASSWORD_ROUTES = {
    "change-password": (
        "PUT", "/users/me/password", lambda password: {"current_password": password, "new_password": NEW_PASSWORD}
    ),
    "delete-account": ("DELETE", "/users/me", lambda password: {"password": password}),
}


@pytest.fixture
def throttled(make_app):
    app = make_app(LOGIN_MAX_FAILURES=3, LOGIN_LOCKOUT=60)
    client = app.test_client()
    register(client)
    return app, client, log_in(client).headers


@pytest.mark.parametrize("route", PASSWORD_ROUTES)
def test_wrong_passwords_at_a_password_route_lock_out_that_user_and_address(throttled, capsys, route):
    app, client, headers = throttled
    method, path, body = PASSWORD_ROUTES[route]
    capsys.readouterr()

    answers = [client.open(path, method=method, json=body(WRONG), headers=headers) for _ in range(3)]
    locked = client.open(path, method=method, json=body(PASSWORD), headers=headers)

    for answer in answers:
        assert_problem(answer, 403, "wrong_password")
    assert_problem(locked, 429, "too_many_attempts")
    assert 0 < int(locked.headers["Retry-After"]) <= 60
    assert_problem(client.post("/auth", json={"username": "travis", "password": PASSWORD}), 429, "too_many_attempts")
    elsewhere = {"REMOTE_ADDR": "10.9.8.7"}
    credentials = {"username": "travis", "password": PASSWORD}
    assert client.post("/auth", json=credentials, environ_overrides=elsewhere).status_code == 200
    assert rows(app, "SELECT count(*) FROM users") == [(1,)]
    events = audit_events(capsys.readouterr().err)
    wrong = [event for event in events if event["event"] == "wrong_password"]
    assert [(event["user_id"], event["action"]) for event in wrong] == [(1, route.replace("-", "_"))] * 3
    assert [event["locked_out"] for event in wrong] == [False, False, True]
    assert all(WRONG not in json.dumps(event) for event in events)
    assert any(event["event"] == "login_throttled" for event in events)


def test_the_right_password_at_a_password_route_resets_the_count(throttled):
    app, client, headers = throttled
    wrong_change = {"current_password": WRONG, "new_password": NEW_PASSWORD}
    for _ in range(2):
        assert client.put("/users/me/password", json=wrong_change, headers=headers).status_code == 403
    right_change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/users/me/password", json=right_change, headers=headers).status_code == 204

    again = {"current_password": WRONG, "new_password": PASSWORD}
    answers = [client.put("/users/me/password", json=again, headers=headers).status_code for _ in range(2)]

    assert answers == [403, 403]
    assert rows(app, "SELECT failures FROM login_throttle") == [(2,)]


def test_openapi_documents_the_429_of_the_password_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    assert "429" in paths["/users/me/password"]["put"]["responses"]
    assert "429" in paths["/users/me"]["delete"]["responses"]


# 3. Login CSRF in cookie mode


@pytest.fixture
def cookie_app(make_app):
    app = make_app(AUTH_COOKIE=True, COOKIE_SECURE=False, CORS_ORIGINS=[APP_ORIGIN])
    register(app.test_client())
    return app


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="cross-site-form"),
        pytest.param({"Origin": APP_ORIGIN}, id="no-x-requested-with"),
        pytest.param({"Origin": "https://evil.example", **CSRF_HEADER}, id="foreign-origin"),
        pytest.param({"Origin": "null", **CSRF_HEADER}, id="null-origin"),
    ],
)
@pytest.mark.parametrize("as_form", [True, False], ids=["form", "json"])
def test_cookie_mode_login_without_the_csrf_proof_sets_no_cookie(cookie_app, headers, as_form):
    client = cookie_app.test_client()
    credentials = {"username": "travis", "password": PASSWORD}

    response = client.post("/auth", headers=headers, **({"data": credentials} if as_form else {"json": credentials}))

    assert_problem(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert "access_token" not in response.get_json()
    assert rows(cookie_app, "SELECT count(*) FROM sessions") == [(0,)]
    assert rows(cookie_app, "SELECT count(*) FROM login_throttle") == [(0,)]


def test_cookie_mode_login_with_the_header_and_an_allowed_origin_sets_the_cookie(cookie_app):
    client = cookie_app.test_client()

    response = client.post(
        "/auth", json={"username": "travis", "password": PASSWORD}, headers={"Origin": APP_ORIGIN, **CSRF_HEADER}
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert any(cookie.startswith("refresh_token=") for cookie in response.headers.getlist("Set-Cookie"))


def test_cookie_mode_refresh_with_a_body_token_still_needs_the_csrf_proof(cookie_app):
    client = cookie_app.test_client()
    login_response = client.post("/auth", json={"username": "travis", "password": PASSWORD}, headers=CSRF_HEADER)
    token = client.get_cookie("refresh_token", path="/auth").value
    client.delete_cookie("refresh_token", path="/auth")

    refused = client.post("/auth/refresh", json={"refresh_token": token}, headers={"Origin": "https://evil.example"})

    assert_problem(refused, 403, "csrf_failed")
    assert "Set-Cookie" not in refused.headers
    assert login_response.status_code == 200
    accepted = client.post("/auth/refresh", json={"refresh_token": token}, headers=CSRF_HEADER)
    assert accepted.status_code == 200, accepted.get_data(as_text=True)


def test_cookie_mode_logout_without_the_csrf_proof_ends_nothing(cookie_app):
    client = cookie_app.test_client()
    login_response = client.post("/auth", json={"username": "travis", "password": PASSWORD}, headers=CSRF_HEADER)
    access = {"Authorization": f"Bearer {login_response.get_json()['access_token']}"}

    refused = client.post("/auth/logout", headers={**access, "Origin": APP_ORIGIN})

    assert_problem(refused, 403, "csrf_failed")
    assert "Set-Cookie" not in refused.headers
    assert client.get("/users/me", headers=access).status_code == 200
    assert client.post("/auth/logout", headers={**access, **CSRF_HEADER}).status_code == 204


def test_cookie_mode_preflight_of_a_login_is_not_refused(cookie_app):
    response = cookie_app.test_client().options(
        "/auth",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-requested-with"},
    )

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


# 4. Storage one user can grow is bounded


def add_pet(client, headers, name="Rex"):
    return client.post("/pets", json={"name": name, "species": "dog"}, headers=headers)


def test_one_pet_past_max_pets_per_user_is_409_and_stored_nowhere(make_app):
    app = make_app(MAX_PETS_PER_USER=3)
    client = app.test_client()
    register(client)
    headers = log_in(client).headers
    for name in ("Rex", "Tom", "Bunny"):
        assert add_pet(client, headers, name).status_code == 201

    response = add_pet(client, headers, "One too many")

    assert_problem(response, 409, "too_many_pets")
    assert rows(app, "SELECT count(*) FROM pets") == [(3,)]
    register(client, "alice")
    assert add_pet(client, log_in(client, "alice").headers).status_code == 201
    assert client.delete("/pets/1", headers=headers).status_code == 204
    assert add_pet(client, headers, "Room again").status_code == 201


def test_parallel_pet_creations_cannot_pass_max_pets_per_user_together(make_app):
    app = make_app(MAX_PETS_PER_USER=5)
    client = app.test_client()
    register(client)
    headers = log_in(client).headers
    start = threading.Barrier(12)
    statuses = []

    def create():
        own_client = app.test_client()
        start.wait(WAIT_SECONDS)
        statuses.append(add_pet(own_client, headers).status_code)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS * 3)

    assert sorted(statuses) == [201] * 5 + [409] * 7
    assert rows(app, "SELECT count(*) FROM pets") == [(5,)]


def test_a_login_past_max_sessions_per_user_ends_the_least_recently_used(make_app, capsys):
    app = make_app(MAX_SESSIONS_PER_USER=3)
    client = app.test_client()
    register(client)
    first, second, third = (log_in(client).headers for _ in range(3))
    # The second was used longest ago; the first was refreshed since.
    for session_id, last_used_at in ((1, 2000), (2, 1000), (3, 3000)):
        write(app, "UPDATE sessions SET last_used_at = ? WHERE id = ?", last_used_at, session_id)
    capsys.readouterr()

    fourth = log_in(client).headers

    assert_problem(client.get("/users/me", headers=second), 401, "invalid_token")
    for headers in (first, third, fourth):
        assert client.get("/users/me", headers=headers).status_code == 200
    assert rows(app, "SELECT id FROM sessions ORDER BY id") == [(1,), (3,), (4,)]
    ended = [event for event in audit_events(capsys.readouterr().err) if event["event"] == "session_revoked"]
    assert [(event["session_id"], event["reason"]) for event in ended] == [(2, "session_limit")]


def test_ended_sessions_make_room_before_any_live_one(make_app):
    app = make_app(MAX_SESSIONS_PER_USER=2)
    client = app.test_client()
    register(client)
    live, logged_out = log_in(client).headers, log_in(client).headers
    assert client.post("/auth/logout", headers=logged_out).status_code == 204

    newest = log_in(client).headers

    assert client.get("/users/me", headers=live).status_code == 200
    assert client.get("/users/me", headers=newest).status_code == 200
    assert rows(app, "SELECT id FROM sessions ORDER BY id") == [(1,), (3,)]


def test_sessions_per_user_stay_bounded_however_often_one_logs_in_and_out(make_app):
    app = make_app(MAX_SESSIONS_PER_USER=3)
    client = app.test_client()
    register(client)

    for _ in range(10):
        assert client.post("/auth/logout", headers=log_in(client).headers).status_code == 204

    assert rows(app, "SELECT count(*) FROM sessions") == [(3,)]


# 7. An account deleted under running requests: 401, never 500


def delete_travis(app):
    write(app, "DELETE FROM users WHERE username = 'travis'")


def test_login_in_flight_when_the_account_is_deleted_is_401(app, monkeypatch):
    client = app.test_client()
    register(client)

    credentials = {"username": "travis", "password": PASSWORD}
    response = race(app, monkeypatch, {"json": credentials}, lambda: delete_travis(app))

    assert_problem(response, 401, "invalid_credentials")
    assert rows(app, "SELECT count(*) FROM sessions") == [(0,)]


def test_pet_creation_in_flight_when_the_account_is_deleted_is_401(app, monkeypatch):
    client = app.test_client()
    register(client)
    headers = log_in(client).headers
    real_pet_fields = pets_module.pet_fields

    def pet_fields_then_account_deleted(body, *, required):
        fields = real_pet_fields(body, required=required)
        delete_travis(app)
        return fields

    monkeypatch.setattr(pets_module, "pet_fields", pet_fields_then_account_deleted)

    response = add_pet(client, headers)

    assert_problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="jwt-server", error="invalid_token"'
    assert rows(app, "SELECT count(*) FROM pets") == [(0,)]


def test_password_change_in_flight_when_the_account_is_deleted_is_401(app, monkeypatch):
    client = app.test_client()
    register(client)
    headers = log_in(client).headers
    racer = Racing(app, "PUT", "/users/me/password",
                   json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers)
    with held_in_bcrypt(monkeypatch, racer.name) as (checked, release):
        racer.start()
        assert checked.wait(WAIT_SECONDS)
        delete_travis(app)
        release.set()
        response = racer.finish()

    assert_problem(response, 401, "invalid_token")
