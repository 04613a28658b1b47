"""Sessions: refresh tokens and their rotation, every way a session ends, cookie mode.

Each test checks what a client sees (status, code, headers, body) and, where
it matters, what the database holds afterwards.
"""
import hashlib
import re
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import jwt
import pytest

from jwt_server import create_app
from jwt_server.config import ConfigError, load_config
from jwt_server.sessions import REVOKED_KEPT_SECONDS
from tests.conftest import PASSWORD, SECRET, assert_problem, build_app, register

NEW_PASSWORD = "a brand new passphrase"
DEFAULT_REFRESH_TTL = 30 * 24 * 3600
CHALLENGE = 'Bearer realm="jwt-server"'
SESSION_KEYS = {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
APP_ORIGIN = "https://app.example"
CSRF_HEADER = {"X-Requested-With": "XMLHttpRequest"}
# <session id>.<generation>.<256 random bits>.<tag>: URL-safe as it is.
REFRESH_TOKEN = r"[1-9][0-9]*\.(0|[1-9][0-9]*)\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{22}"


@dataclass
class Tokens:
    """What one login (or refresh) handed the client."""

    access: str
    refresh: str

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.access}"}

    @property
    def claims(self):
        return jwt.decode(self.access, SECRET, algorithms=["HS256"], issuer="jwt-server")

    @property
    def session_id(self):
        return int(self.claims["sid"])


def sha256(token):
    return hashlib.sha256(token.encode()).hexdigest()


def random_part(refresh_token):
    """The 256 random bits of a refresh token, of which the server keeps a SHA-256."""
    return refresh_token.split(".")[2]


def log_in(client, username="travis", password=PASSWORD, **kwargs):
    response = client.post("/auth", json={"username": username, "password": password}, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return Tokens(body["access_token"], body.get("refresh_token"))


def refresh(client, refresh_token):
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def refreshed(client, tokens):
    """Rotate ``tokens`` successfully and return the new pair."""
    response = refresh(client, tokens.refresh)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return Tokens(body["access_token"], body["refresh_token"])


def assert_access_refused(client, tokens):
    response = client.get("/users/me", headers=tokens.headers)
    assert_problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == f'{CHALLENGE}, error="invalid_token"'


def assert_refresh_refused(client, refresh_token, code="invalid_refresh_token"):
    response = refresh(client, refresh_token)
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
    assert "access_token" not in response.get_json()


def assert_session_ended(client, tokens):
    assert_access_refused(client, tokens)
    assert_refresh_refused(client, tokens.refresh)


def assert_access_works(client, tokens):
    response = client.get("/users/me", headers=tokens.headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def session_row(database, session_id):
    return database.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()


def table(database, name):
    return [tuple(row) for row in database.execute(f"SELECT * FROM {name} ORDER BY 1")]


def snapshot(database):
    """Every row of every table a session route may touch, to prove nothing changed."""
    return {name: table(database, name) for name in ("users", "pets", "sessions")}


def set_expires_at(database, session_id, expires_at):
    database.execute("UPDATE sessions SET expires_at = ? WHERE id = ?", (expires_at, session_id))
    database.commit()


def database_bytes(app):
    """The bytes of the database file and its write-ahead log, where a token could hide."""
    path = Path(app.config["DATABASE"])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def list_sessions(client, tokens):
    response = client.get("/users/me/sessions", headers=tokens.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def travis(client):
    """A registered user, logged in: the tokens of the login."""
    register(client)
    return log_in(client)


# POST /auth opens a session


def test_login_returns_a_url_safe_refresh_token_of_at_least_256_bits(client, travis):
    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})

    body = response.get_json()
    assert response.status_code == 200
    assert re.fullmatch(REFRESH_TOKEN, body["refresh_token"])
    assert body["refresh_expires_in"] in (DEFAULT_REFRESH_TTL - 1, DEFAULT_REFRESH_TTL)
    assert body["token_type"] == "Bearer"
    assert response.headers["Cache-Control"] == "no-store"
    assert body["refresh_token"] != travis.refresh


def test_login_stores_only_the_sha256_of_the_refresh_token(app, client, database, travis):
    row = session_row(database, travis.session_id)

    assert row["refresh_token_hash"] == sha256(random_part(travis.refresh))
    stored = database_bytes(app)
    assert sha256(random_part(travis.refresh)).encode() in stored
    assert random_part(travis.refresh).encode() not in stored


def test_access_token_names_its_session_in_a_string_sid(database, travis):
    claims = travis.claims

    assert isinstance(claims["sid"], str)
    row = session_row(database, int(claims["sid"]))
    assert row is not None
    assert str(row["user_id"]) == claims["sub"]
    assert row["revoked_at"] is None
    assert row["expires_at"] - row["created_at"] == DEFAULT_REFRESH_TTL


def test_login_records_the_user_agent_and_the_ip(client, database):
    register(client)

    tokens = log_in(
        client, headers={"User-Agent": "Firefox on the kitchen laptop"}, environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )

    row = session_row(database, tokens.session_id)
    assert row["user_agent"] == "Firefox on the kitchen laptop"
    assert row["ip"] == "203.0.113.9"


def test_each_login_opens_its_own_session(client, database, travis):
    second = log_in(client)

    assert second.session_id != travis.session_id
    assert database.execute("SELECT count(*) FROM sessions").fetchone()[0] == 2


# POST /auth/refresh


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
def test_refresh_returns_new_access_and_refresh_tokens(app, client, database, travis, as_form):
    database.execute("UPDATE sessions SET last_used_at = 0 WHERE id = ?", (travis.session_id,))
    database.commit()
    if as_form:
        response = client.post("/auth/refresh", data={"refresh_token": travis.refresh})
    else:
        response = client.post("/auth/refresh", json={"refresh_token": travis.refresh})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    new = Tokens(body["access_token"], body["refresh_token"])
    assert new.refresh != travis.refresh and new.access != travis.access
    assert re.fullmatch(REFRESH_TOKEN, new.refresh)
    assert 0 < body["refresh_expires_in"] <= DEFAULT_REFRESH_TTL
    assert new.session_id == travis.session_id
    assert_access_works(client, new)
    row = session_row(database, travis.session_id)
    assert row["refresh_token_hash"] == sha256(random_part(new.refresh))
    assert row["last_used_at"] >= time.time() - 60
    assert new.refresh.encode() not in database_bytes(app)


def test_refresh_keeps_the_sessions_absolute_expiry(client, database, travis):
    expires_at = int(time.time()) + 100
    set_expires_at(database, travis.session_id, expires_at)

    response = refresh(client, travis.refresh)

    assert response.status_code == 200
    assert 0 < response.get_json()["refresh_expires_in"] <= 100
    assert session_row(database, travis.session_id)["expires_at"] == expires_at


def test_stolen_token_used_first_by_the_thief_locks_out_thief_and_victim(client, database, travis):
    thief = refreshed(client, travis)
    assert_access_works(client, thief)
    assert_access_works(client, travis)

    assert_refresh_refused(client, travis.refresh, "refresh_token_reused")

    assert session_row(database, travis.session_id)["revoked_at"] is not None
    assert_access_refused(client, thief)
    assert_refresh_refused(client, thief.refresh)
    assert_access_refused(client, travis)


def test_stolen_token_replayed_after_the_victim_refreshed_locks_out_the_victim_too(client, database, travis):
    victim = refreshed(client, travis)
    other_session = log_in(client)

    assert_refresh_refused(client, travis.refresh, "refresh_token_reused")

    assert session_row(database, travis.session_id)["revoked_at"] is not None
    assert_access_refused(client, victim)
    assert_refresh_refused(client, victim.refresh)
    assert_access_refused(client, travis)
    assert_access_works(client, other_session)
    assert session_row(database, other_session.session_id)["revoked_at"] is None


def test_any_earlier_token_of_a_rotation_chain_is_recognised_as_reused(client, travis):
    first_rotation = refreshed(client, travis)
    latest = refreshed(client, refreshed(client, first_rotation))

    assert_refresh_refused(client, first_rotation.refresh, "refresh_token_reused")

    assert_session_ended(client, latest)


def test_rotated_and_current_tokens_are_kept_only_as_a_hash_of_the_current_one(app, client, database, travis):
    new = refreshed(client, travis)

    assert session_row(database, travis.session_id)["refresh_token_hash"] == sha256(random_part(new.refresh))
    stored = database_bytes(app)
    assert random_part(travis.refresh).encode() not in stored
    assert random_part(new.refresh).encode() not in stored


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"json": {"refresh_token": secrets.token_urlsafe(32)}}, id="unknown"),
        pytest.param({"json": {"refresh_token": ""}}, id="empty"),
        pytest.param({"json": {"refresh_token": None}}, id="null"),
        pytest.param({"json": {"refresh_token": 12345}}, id="number"),
        pytest.param({"json": {"refresh_token": ["a", "b"]}}, id="list"),
        pytest.param({"json": {"refresh_token": {"token": "x"}}}, id="object"),
        pytest.param({"json": {"refresh_token": True}}, id="boolean"),
        pytest.param({"json": {}}, id="missing"),
        pytest.param({}, id="no-body"),
        pytest.param({"data": {"refresh_token": ""}}, id="empty-form-field"),
    ],
)
def test_bad_refresh_token_is_401_and_changes_nothing(client, database, travis, kwargs):
    refreshed(client, log_in(client))  # a rotated token in the table, too
    before = snapshot(database)

    response = client.post("/auth/refresh", **kwargs)

    assert_problem(response, 401, "invalid_refresh_token")
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert snapshot(database) == before
    assert_access_works(client, travis)


def test_the_stored_hash_is_not_a_refresh_token(client, database, travis):
    before = snapshot(database)

    assert_refresh_refused(client, sha256(random_part(travis.refresh)))
    assert_refresh_refused(client, session_row(database, travis.session_id)["refresh_token_hash"])

    assert snapshot(database) == before


# The ways a session ends


def test_logout_ends_the_session(client, database, travis):
    other_session = log_in(client)

    response = client.post("/auth/logout", headers=travis.headers)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert session_row(database, travis.session_id)["revoked_at"] is not None
    assert_session_ended(client, travis)
    assert_access_works(client, other_session)


def test_logout_needs_a_live_session(client, travis):
    assert client.post("/auth/logout", headers=travis.headers).status_code == 204

    assert_problem(client.post("/auth/logout", headers=travis.headers), 401, "invalid_token")
    assert_problem(client.post("/auth/logout"), 401, "authentication_required")


def test_deleting_another_own_session_ends_it_and_keeps_the_current_one(client, database, travis):
    laptop = log_in(client)

    response = client.delete(f"/users/me/sessions/{laptop.session_id}", headers=travis.headers)

    assert response.status_code == 204
    assert session_row(database, laptop.session_id)["revoked_at"] is not None
    assert_session_ended(client, laptop)
    assert session_row(database, travis.session_id)["revoked_at"] is None
    assert_access_works(client, travis)
    assert_access_works(client, refreshed(client, travis))


def test_deleting_the_current_session_by_id_ends_it(client, travis):
    response = client.delete(f"/users/me/sessions/{travis.session_id}", headers=travis.headers)

    assert response.status_code == 204
    assert_session_ended(client, travis)


def test_someone_elses_session_is_not_found_and_stays_alive(client, database, travis):
    register(client, "alice")
    alice = log_in(client, "alice")
    before = snapshot(database)

    response = client.delete(f"/users/me/sessions/{alice.session_id}", headers=travis.headers)

    assert_problem(response, 404, "session_not_found")
    assert snapshot(database) == before
    assert_access_works(client, alice)
    assert_access_works(client, refreshed(client, alice))


@pytest.mark.parametrize("session_id", ["999999", str(2**63 - 1), str(2**63), "9" * 40])
def test_unknown_or_huge_session_id_is_not_found(client, database, travis, session_id):
    before = snapshot(database)

    response = client.delete(f"/users/me/sessions/{session_id}", headers=travis.headers)

    assert_problem(response, 404, "session_not_found")
    assert snapshot(database) == before


def test_deleting_all_sessions_ends_every_one_including_the_current(client, database, travis):
    phone, laptop = log_in(client), log_in(client)
    register(client, "alice")
    alice = log_in(client, "alice")

    response = client.delete("/users/me/sessions", headers=travis.headers)

    assert response.status_code == 204
    for tokens in (travis, phone, laptop):
        assert session_row(database, tokens.session_id)["revoked_at"] is not None
        assert_session_ended(client, tokens)
    assert_access_works(client, alice)


def test_session_routes_need_a_token(client, travis):
    for method, path in [
        ("get", "/users/me/sessions"),
        ("delete", "/users/me/sessions"),
        ("delete", f"/users/me/sessions/{travis.session_id}"),
        ("put", "/users/me/password"),
        ("delete", "/users/me"),
    ]:
        response = getattr(client, method)(path)
        assert_problem(response, 401, "authentication_required")
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert_access_works(client, travis)


# PUT /users/me/password


def change_password(client, tokens, body):
    return client.put("/users/me/password", json=body, headers=tokens.headers)


def can_log_in(client, password, username="travis"):
    response = client.post("/auth", json={"username": username, "password": password})
    assert response.status_code in (200, 401), response.get_data(as_text=True)
    return response.status_code == 200


def test_password_change_ends_every_other_session_and_keeps_the_current(client, database, travis):
    phone, laptop = log_in(client), log_in(client)
    register(client, "alice")
    alice = log_in(client, "alice")

    response = change_password(client, travis, {"current_password": PASSWORD, "new_password": NEW_PASSWORD})

    assert response.status_code == 204
    assert response.get_data() == b""
    for tokens in (phone, laptop):
        assert session_row(database, tokens.session_id)["revoked_at"] is not None
        assert_session_ended(client, tokens)
    assert session_row(database, travis.session_id)["revoked_at"] is None
    assert_access_works(client, travis)
    assert_access_works(client, refreshed(client, travis))
    assert_access_works(client, alice)
    assert not can_log_in(client, PASSWORD)
    assert can_log_in(client, NEW_PASSWORD)
    stored = database.execute("SELECT password_hash FROM users WHERE username = 'travis'").fetchone()[0]
    assert bcrypt.checkpw(NEW_PASSWORD.encode(), stored.encode())


@pytest.mark.parametrize(
    "body, fields",
    [
        pytest.param({}, ["current_password", "new_password"], id="empty"),
        pytest.param({"new_password": NEW_PASSWORD}, ["current_password"], id="no-current"),
        pytest.param({"current_password": "", "new_password": NEW_PASSWORD}, ["current_password"], id="empty-current"),
        pytest.param({"current_password": 12345678, "new_password": NEW_PASSWORD}, ["current_password"],
                     id="numeric-current"),
        pytest.param({"current_password": PASSWORD}, ["new_password"], id="no-new"),
        pytest.param({"current_password": PASSWORD, "new_password": "short"}, ["new_password"], id="new-too-short"),
        pytest.param({"current_password": PASSWORD, "new_password": "a" * 73}, ["new_password"], id="new-73-bytes"),
        pytest.param({"current_password": PASSWORD, "new_password": "nul\0inside"}, ["new_password"],
                     id="new-with-nul"),
        pytest.param({"current_password": "wrong password", "new_password": "short"}, ["new_password"],
                     id="wrong-current-and-bad-new"),
    ],
)
def test_password_change_validation_comes_first_and_changes_nothing(client, database, travis, body, fields):
    phone = log_in(client)
    before = snapshot(database)

    response = change_password(client, travis, body)

    problem = assert_problem(response, 422, "validation_error")
    assert sorted(error["field"] for error in problem["errors"]) == sorted(fields)
    assert snapshot(database) == before
    assert_access_works(client, phone)


def test_password_change_with_a_wrong_current_password_is_403_and_changes_nothing(client, database, travis):
    phone = log_in(client)
    body = {"current_password": "not my password", "new_password": NEW_PASSWORD}
    before = snapshot(database)

    response = change_password(client, travis, body)

    assert_problem(response, 403, "wrong_password")
    assert snapshot(database) == before
    assert_access_works(client, phone)
    assert_access_works(client, refreshed(client, phone))
    assert can_log_in(client, PASSWORD)
    assert not can_log_in(client, NEW_PASSWORD)


# DELETE /users/me


def add_pet(client, tokens, name):
    response = client.post("/pets", json={"name": name, "species": "dog"}, headers=tokens.headers)
    assert response.status_code == 201, response.get_data(as_text=True)


def count(database, sql, *parameters):
    return database.execute(sql, parameters).fetchone()[0]


def test_deleting_the_account_removes_user_pets_and_sessions(client, database, travis):
    user_id = int(travis.claims["sub"])
    add_pet(client, travis, "Bunny")
    add_pet(client, travis, "Rex")
    laptop = refreshed(client, log_in(client))
    register(client, "alice")
    alice = log_in(client, "alice")
    add_pet(client, alice, "Tom")
    alices_rotation = refreshed(client, alice)

    response = client.delete("/users/me", json={"password": PASSWORD}, headers=travis.headers)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert count(database, "SELECT count(*) FROM users WHERE id = ?", user_id) == 0
    assert count(database, "SELECT count(*) FROM pets WHERE user_id = ?", user_id) == 0
    assert count(database, "SELECT count(*) FROM sessions WHERE user_id = ?", user_id) == 0
    assert count(database, "SELECT count(*) FROM sessions WHERE user_id != ?", user_id) == 1
    assert_session_ended(client, travis)
    assert_session_ended(client, laptop)
    assert not can_log_in(client, PASSWORD)
    assert count(database, "SELECT count(*) FROM pets") == 1
    assert_access_works(client, alices_rotation)


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        pytest.param({"json": {"password": "not my password"}}, 403, "wrong_password", id="wrong-password"),
        pytest.param({"json": {}}, 422, "validation_error", id="missing-password"),
        pytest.param({"json": {"password": ""}}, 422, "validation_error", id="empty-password"),
        pytest.param({"json": {"password": 12345678}}, 422, "validation_error", id="numeric-password"),
        pytest.param({}, 422, "validation_error", id="no-body"),
    ],
)
def test_deleting_the_account_without_the_right_password_changes_nothing(
    client, database, travis, kwargs, status, code
):
    add_pet(client, travis, "Bunny")
    laptop = refreshed(client, log_in(client))
    before = snapshot(database)

    response = client.delete("/users/me", headers=travis.headers, **kwargs)

    problem = assert_problem(response, status, code)
    if status == 422:
        assert [error["field"] for error in problem["errors"]] == ["password"]
    assert snapshot(database) == before
    assert_access_works(client, travis)
    assert_access_works(client, refreshed(client, laptop))
    assert can_log_in(client, PASSWORD)


# Expiry


def test_session_past_its_expiry_refuses_both_tokens(client, database, travis):
    set_expires_at(database, travis.session_id, int(time.time()) - 1)

    assert_session_ended(client, travis)


def test_session_ends_by_itself_after_refresh_token_ttl(tmp_path):
    app = build_app(tmp_path / "ttl.sqlite", REFRESH_TOKEN_TTL=1)
    client = app.test_client()
    register(client)
    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})
    assert response.get_json()["refresh_expires_in"] in (0, 1)
    assert response.get_json()["expires_in"] == 900
    tokens = Tokens(response.get_json()["access_token"], response.get_json()["refresh_token"])

    time.sleep(2.1)

    assert_session_ended(client, tokens)


# flask set-password


def test_set_password_command_ends_every_session_of_the_user(runner, client, database, travis):
    laptop = log_in(client)
    register(client, "alice")
    alice = log_in(client, "alice")

    result = runner.invoke(args=["set-password", "travis"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    for tokens in (travis, laptop):
        assert session_row(database, tokens.session_id)["revoked_at"] is not None
        assert_session_ended(client, tokens)
    assert_access_works(client, alice)
    assert can_log_in(client, NEW_PASSWORD)


# GET /users/me/sessions


def test_session_list_shows_live_sessions_with_exactly_one_current(client, database):
    register(client)
    phone = log_in(client, headers={"User-Agent": "Phone"}, environ_base={"REMOTE_ADDR": "198.51.100.4"})
    laptop = log_in(client, headers={"User-Agent": "Laptop"})
    revoked = log_in(client, headers={"User-Agent": "Revoked"})
    expired = log_in(client, headers={"User-Agent": "Expired"})
    assert client.post("/auth/logout", headers=revoked.headers).status_code == 204
    set_expires_at(database, expired.session_id, int(time.time()) - 1)
    register(client, "alice")
    log_in(client, "alice")

    response = client.get("/users/me/sessions", headers=laptop.headers)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    listed = response.get_json()
    assert [item["id"] for item in listed] == [phone.session_id, laptop.session_id]
    for item in listed:
        assert set(item) == SESSION_KEYS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["created_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["last_used_at"])
    assert [item["current"] for item in listed] == [False, True]
    assert [(item["user_agent"], item["ip"]) for item in listed] == [
        ("Phone", "198.51.100.4"),
        ("Laptop", "127.0.0.1"),
    ]
    assert [item["current"] for item in list_sessions(client, phone)] == [True, False]


def test_session_list_never_shows_a_token_or_hash(client, travis):
    text = client.get("/users/me/sessions", headers=travis.headers).get_data(as_text=True)

    assert travis.refresh not in text and sha256(travis.refresh) not in text


# Pruning


def test_expired_sessions_are_pruned_on_a_later_login(client, database, travis):
    old_phone = refreshed(client, log_in(client))
    register(client, "alice")
    old_alice = log_in(client, "alice")
    for tokens in (old_phone, old_alice):
        set_expires_at(database, tokens.session_id, int(time.time()) - 1)
    assert count(database, "SELECT count(*) FROM sessions") == 3

    new = log_in(client)

    remaining = [row[0] for row in database.execute("SELECT id FROM sessions ORDER BY id")]
    assert remaining == [travis.session_id, new.session_id]
    assert_access_works(client, travis)


def test_revoked_session_expires_within_a_day_so_pruning_removes_it(client, database, travis):
    assert client.post("/auth/logout", headers=travis.headers).status_code == 204
    assert session_row(database, travis.session_id)["expires_at"] <= time.time() + REVOKED_KEPT_SECONDS
    set_expires_at(database, travis.session_id, int(time.time()) - 1)

    log_in(client)

    assert session_row(database, travis.session_id) is None


# Cookie mode (AUTH_COOKIE=true)


def cookie_app(tmp_path, secure=True):
    return build_app(
        tmp_path / "cookie.sqlite", AUTH_COOKIE=True, COOKIE_SECURE=secure, CORS_ORIGINS=[APP_ORIGIN]
    )


@pytest.fixture
def cookie_client(tmp_path):
    client = cookie_app(tmp_path).test_client()
    register(client)
    return client


def refresh_cookie(response):
    """The attributes of the refresh_token Set-Cookie: ``{name: value}``, names lower-cased."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("refresh_token=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    first, *attributes = [part.strip() for part in headers[0].split(";")]
    cookie = {"refresh_token": first.partition("=")[2]}
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        cookie[name.lower()] = value
    return cookie


def cookie_login(client):
    response = client.post("/auth", json={"username": "travis", "password": PASSWORD}, headers=CSRF_HEADER)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def cookie_refresh(client, **headers):
    return client.post("/auth/refresh", headers=headers)


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "cookie-secure-false"])
def test_cookie_login_puts_the_refresh_token_in_a_strict_http_only_cookie(tmp_path, secure):
    app = cookie_app(tmp_path, secure)
    client = app.test_client()
    register(client)

    response = cookie_login(client)

    body = response.get_json()
    assert "refresh_token" not in body
    assert body["refresh_expires_in"] in (DEFAULT_REFRESH_TTL - 1, DEFAULT_REFRESH_TTL)
    cookie = refresh_cookie(response)
    assert re.fullmatch(REFRESH_TOKEN, cookie["refresh_token"])
    assert "httponly" in cookie
    assert ("secure" in cookie) is secure
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/auth"
    assert int(cookie["max-age"]) == body["refresh_expires_in"]
    assert random_part(cookie["refresh_token"]).encode() not in database_bytes(app)


def test_cookie_refresh_with_the_header_and_an_allowed_origin_rotates_the_cookie(cookie_client):
    old = refresh_cookie(cookie_login(cookie_client))["refresh_token"]

    response = cookie_refresh(cookie_client, Origin=APP_ORIGIN, **CSRF_HEADER)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "refresh_token" not in body and body["refresh_expires_in"] > 0
    new = refresh_cookie(response)["refresh_token"]
    assert new != old
    assert cookie_client.get_cookie("refresh_token", path="/auth").value == new
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    me = cookie_client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200

    cookie_client.set_cookie("refresh_token", old, path="/auth")
    replay = cookie_refresh(cookie_client, Origin=APP_ORIGIN, **CSRF_HEADER)
    assert_problem(replay, 401, "refresh_token_reused")


def test_cookie_refresh_without_origin_but_with_the_header_succeeds(cookie_client):
    cookie_login(cookie_client)

    response = cookie_refresh(cookie_client, **CSRF_HEADER)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert refresh_cookie(response)["refresh_token"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": APP_ORIGIN}, id="no-x-requested-with"),
        pytest.param({}, id="no-header-no-origin"),
        pytest.param({"Origin": "https://evil.example", **CSRF_HEADER}, id="foreign-origin"),
        pytest.param({"Origin": "http://app.example", **CSRF_HEADER}, id="http-scheme"),
        pytest.param({"Origin": "https://app.example.evil.example", **CSRF_HEADER}, id="suffixed-host"),
        pytest.param({"Origin": "https://app.example:8443", **CSRF_HEADER}, id="other-port"),
        pytest.param({"Origin": "null", **CSRF_HEADER}, id="null-origin"),
    ],
)
def test_cookie_refresh_failing_the_csrf_checks_is_403_and_leaves_the_session_alone(tmp_path, headers):
    app = cookie_app(tmp_path)
    client = app.test_client()
    register(client)
    cookie_login(client)
    with closing(sqlite3.connect(app.config["DATABASE"])) as database:
        before = snapshot(database)

        response = cookie_refresh(client, **headers)

        assert_problem(response, 403, "csrf_failed")
        assert "Set-Cookie" not in response.headers
        assert snapshot(database) == before
    assert cookie_refresh(client, Origin=APP_ORIGIN, **CSRF_HEADER).status_code == 200


def test_csrf_failure_from_the_app_origin_is_readable_by_the_app(cookie_client):
    cookie_login(cookie_client)

    response = cookie_refresh(cookie_client, Origin=APP_ORIGIN)

    assert_problem(response, 403, "csrf_failed")
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


def test_cookie_mode_refresh_with_no_cookie_is_invalid_refresh_token(cookie_client):
    response = cookie_refresh(cookie_client, Origin=APP_ORIGIN, **CSRF_HEADER)

    assert_problem(response, 401, "invalid_refresh_token")


def test_cookie_mode_preflight_allows_credentials_and_the_csrf_header(cookie_client):
    response = cookie_client.options(
        "/auth/refresh",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-requested-with, content-type",
        },
    )

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert "x-requested-with" in allowed


def test_cookie_mode_gives_a_foreign_origin_no_cors_grant(cookie_client):
    cookie_login(cookie_client)

    response = cookie_refresh(cookie_client, Origin="https://evil.example", **CSRF_HEADER)

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cookie_mode_logout_clears_the_cookie_and_ends_the_session(cookie_client):
    login_response = cookie_login(cookie_client)
    refresh_token = refresh_cookie(login_response)["refresh_token"]
    access = {"Authorization": f"Bearer {login_response.get_json()['access_token']}"}

    response = cookie_client.post("/auth/logout", headers={**access, "Origin": APP_ORIGIN, **CSRF_HEADER})

    assert response.status_code == 204
    cleared = refresh_cookie(response)
    assert cleared["refresh_token"] == ""
    assert cleared["path"] == "/auth"
    assert cleared.get("max-age") == "0" or "1970" in cleared.get("expires", "")
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert cookie_client.get_cookie("refresh_token", path="/auth") is None
    assert_problem(cookie_client.get("/users/me", headers=access), 401, "invalid_token")
    cookie_client.set_cookie("refresh_token", refresh_token, path="/auth")
    assert_problem(cookie_refresh(cookie_client, **CSRF_HEADER), 401, "invalid_refresh_token")


@pytest.mark.parametrize(
    "environ",
    [
        {"AUTH_COOKIE": "true"},
        {"AUTH_COOKIE": "true", "CORS_ORIGINS": "*"},
        {"AUTH_COOKIE": "1", "CORS_ORIGINS": " * "},
    ],
)
def test_cookie_mode_with_every_origin_allowed_is_refused(environ):
    with pytest.raises(ConfigError) as raised:
        load_config(environ)

    assert re.search(r"AUTH_COOKIE|CORS_ORIGINS", str(raised.value))


def test_cookie_mode_with_listed_origins_is_accepted():
    settings = load_config({"AUTH_COOKIE": "true", "CORS_ORIGINS": APP_ORIGIN, "COOKIE_SECURE": "false"})

    assert settings["AUTH_COOKIE"] is True
    assert settings["COOKIE_SECURE"] is False
    assert settings["CORS_ORIGINS"] == [APP_ORIGIN]


def test_server_with_cookie_mode_and_every_origin_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTH_COOKIE", "true")
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'refused.sqlite'}")

    with pytest.raises(ConfigError) as raised:
        create_app({"JWT_SECRET": SECRET})

    assert "AUTH_COOKIE" in str(raised.value)
    assert not (tmp_path / "refused.sqlite").exists()
