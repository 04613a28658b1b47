"""Every way a session ends: logout, deleting one or all sessions, a password
change, deleting the account, expiry, flask set-password; and the pruning of
ended sessions.

Each test checks what a client sees (status, code, headers, body) and, where
it matters, what the database holds afterwards.
"""
import time

import bcrypt
import pytest

from jwt_server.sessions import REVOKED_KEPT_SECONDS
from tests.helpers import (
    CHALLENGE,
    NEW_PASSWORD,
    PASSWORD,
    Tokens,
    assert_access_works,
    assert_problem,
    assert_session_ended,
    assert_unchanged,
    can_log_in,
    count,
    log_in,
    refreshed,
    register,
    session_row,
    set_expires_at,
    snapshot,
)

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
    assert not can_log_in(client, "travis", PASSWORD)
    assert can_log_in(client, "travis", NEW_PASSWORD)
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
    # Only the login throttle counts the wrong password (as a failed login would).
    assert_unchanged(database, before, {"login_throttle"})
    assert count(database, "SELECT failures FROM login_throttle") == 1
    assert_access_works(client, phone)
    assert_access_works(client, refreshed(client, phone))
    assert can_log_in(client, "travis", PASSWORD)
    assert not can_log_in(client, "travis", NEW_PASSWORD)


# DELETE /users/me


def add_pet(client, tokens, name):
    response = client.post("/pets", json={"name": name, "species": "dog"}, headers=tokens.headers)
    assert response.status_code == 201, response.get_data(as_text=True)


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
    assert not can_log_in(client, "travis", PASSWORD)
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
    # A wrong password is counted by the login throttle; a 422 not even that.
    assert_unchanged(database, before, {"login_throttle"} if status == 403 else ())
    assert_access_works(client, travis)
    assert_access_works(client, refreshed(client, laptop))
    assert can_log_in(client, "travis", PASSWORD)


# Expiry


def test_session_past_its_expiry_refuses_both_tokens(client, database, travis):
    set_expires_at(database, travis.session_id, int(time.time()) - 1)

    assert_session_ended(client, travis)


def test_session_ends_by_itself_after_refresh_token_ttl(make_app):
    app = make_app(REFRESH_TOKEN_TTL=1)
    client = app.test_client()
    register(client)
    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})
    assert response.get_json()["refresh_expires_in"] in (0, 1)
    assert response.get_json()["expires_in"] == 900
    tokens = Tokens(response.get_json())

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
    assert can_log_in(client, "travis", NEW_PASSWORD)


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
