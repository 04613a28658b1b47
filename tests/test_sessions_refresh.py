"""Sessions: what a login opens, refresh-token rotation and the detection of a
reused token, and the list of one's sessions (GET /users/me/sessions).

Each test checks what a client sees (status, code, headers, body) and, where
it matters, what the database holds afterwards.
"""
import re
import secrets
import time

import pytest

from tests.helpers import (
    CHALLENGE,
    DEFAULT_REFRESH_TTL,
    PASSWORD,
    REFRESH_TOKEN,
    Tokens,
    assert_access_refused,
    assert_access_works,
    assert_problem,
    assert_refresh_refused,
    assert_session_ended,
    database_bytes,
    log_in,
    random_part,
    refresh,
    refreshed,
    register,
    session_row,
    set_expires_at,
    sha256,
    snapshot,
)

SESSION_KEYS = {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}


def list_sessions(client, tokens):
    response = client.get("/users/me/sessions", headers=tokens.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


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
    assert travis.refresh.encode() not in stored


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
    new = Tokens(body)
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
    refreshed(client, log_in(client))  # a session that has been refreshed, too
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

    assert travis.refresh not in text and sha256(random_part(travis.refresh)) not in text
