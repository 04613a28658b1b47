"""Administration routes: PATCH/DELETE /users/<id>, DELETE /users/<id>/sessions."""
import json

import pytest

from tests.helpers import PASSWORD, assert_problem, log_in, register

ADMIN_PASSWORD = "administrator passphrase"


def make_admin(client, database, username="root"):
    user = register(client, username, ADMIN_PASSWORD)
    database.execute("UPDATE users SET is_admin = 1 WHERE id = ?", (user["id"],))
    database.commit()
    return user, log_in(client, username, ADMIN_PASSWORD).headers


@pytest.fixture
def admin(client, database):
    """An administrator (root) and a user (travis): ``(admin headers, travis)``."""
    _, headers = make_admin(client, database)
    return headers, register(client, "travis")


def flags(database, user_id):
    row = database.execute("SELECT is_admin, disabled FROM users WHERE id = ?", (user_id,)).fetchone()
    return tuple(row) if row else None


def audit_events(capsys):
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_an_admin_promotes_a_user(client, database, admin):
    headers, travis = admin

    response = client.patch(f"/users/{travis['id']}", json={"is_admin": True}, headers=headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["is_admin"] is True and body["disabled"] is False and body["id"] == travis["id"]
    assert flags(database, travis["id"]) == (1, 0)
    assert "no-store" in response.headers["Cache-Control"]


def test_disabling_ends_every_session_and_login_then_answers_403(client, database, admin):
    headers, travis = admin
    tokens = log_in(client, "travis")

    response = client.patch(f"/users/{travis['id']}", json={"disabled": True}, headers=headers)

    assert response.status_code == 200 and response.get_json()["disabled"] is True
    assert_problem(client.get("/users/me", headers=tokens.headers), 401, "invalid_token")
    refreshed = client.post("/auth/refresh", json={"refresh_token": tokens.refresh})
    assert_problem(refreshed, 401, "invalid_refresh_token")
    assert_problem(client.post("/auth", json={"username": "travis", "password": PASSWORD}), 403, "account_disabled")
    wrong = client.post("/auth", json={"username": "travis", "password": "not the password"})
    assert_problem(wrong, 401, "invalid_credentials")
    assert database.execute(
        "SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL", (travis["id"],)
    ).fetchone()[0] == 0


def test_enabling_again_revives_no_session_but_allows_login(client, database, admin):
    headers, travis = admin
    tokens = log_in(client, "travis")
    client.patch(f"/users/{travis['id']}", json={"disabled": True}, headers=headers)

    response = client.patch(f"/users/{travis['id']}", json={"disabled": False}, headers=headers)

    assert response.status_code == 200 and response.get_json()["disabled"] is False
    assert_problem(client.get("/users/me", headers=tokens.headers), 401, "invalid_token")
    assert client.get("/users/me", headers=log_in(client, "travis").headers).status_code == 200


def test_a_right_password_on_a_disabled_account_resets_the_throttle(app, client, admin):
    headers, travis = admin
    client.patch(f"/users/{travis['id']}", json={"disabled": True}, headers=headers)
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        client.post("/auth", json={"username": "travis", "password": "wrong password"})

    assert client.post("/auth", json={"username": "travis", "password": PASSWORD}).status_code == 403
    for _ in range(limit - 1):
        response = client.post("/auth", json={"username": "travis", "password": "wrong password"})
        assert response.status_code == 401


@pytest.mark.parametrize("body", [{"is_admin": False}, {"disabled": True}, {"is_admin": False, "disabled": False}])
def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(client, database, body):
    root, headers = make_admin(client, database)

    response = client.patch(f"/users/{root['id']}", json=body, headers=headers)

    assert_problem(response, 409, "last_admin")
    assert flags(database, root["id"]) == (1, 0)


def test_the_last_admin_may_set_flags_that_keep_them_an_enabled_admin(client, database):
    root, headers = make_admin(client, database)

    response = client.patch(f"/users/{root['id']}", json={"is_admin": True, "disabled": False}, headers=headers)

    assert response.status_code == 200
    assert flags(database, root["id"]) == (1, 0)


def test_the_last_enabled_admin_cannot_be_deleted(client, database):
    root, headers = make_admin(client, database)

    assert_problem(client.delete(f"/users/{root['id']}", headers=headers), 409, "last_admin")
    assert flags(database, root["id"]) == (1, 0)


def test_a_disabled_admin_does_not_count_as_the_other_admin(client, database):
    root, headers = make_admin(client, database)
    other, _ = make_admin(client, database, "deputy")
    assert client.patch(f"/users/{other['id']}", json={"disabled": True}, headers=headers).status_code == 200

    assert_problem(client.patch(f"/users/{root['id']}", json={"is_admin": False}, headers=headers), 409, "last_admin")


def test_with_a_second_admin_an_admin_can_step_down(client, database):
    root, headers = make_admin(client, database)
    make_admin(client, database, "deputy")

    response = client.patch(f"/users/{root['id']}", json={"is_admin": False}, headers=headers)

    assert response.status_code == 200 and response.get_json()["is_admin"] is False
    # Rights come from the database: the same token is no longer an admin's.
    assert_problem(client.get("/users", headers=headers), 403, "insufficient_scope")


def test_an_admin_deletes_a_user_with_pets_and_sessions(client, database, admin):
    headers, travis = admin
    tokens = log_in(client, "travis")
    client.post("/pets", json={"name": "Bunny"}, headers=tokens.headers)

    response = client.delete(f"/users/{travis['id']}", headers=headers)

    assert response.status_code == 204
    for table, column in (("users", "id"), ("pets", "user_id"), ("sessions", "user_id")):
        count = database.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", (travis["id"],)).fetchone()[0]
        assert count == 0, table
    assert_problem(client.get("/users/me", headers=tokens.headers), 401, "invalid_token")


def test_an_admin_ends_every_session_of_a_user(client, admin):
    headers, travis = admin
    first, second = log_in(client, "travis"), log_in(client, "travis")

    assert client.delete(f"/users/{travis['id']}/sessions", headers=headers).status_code == 204

    for tokens in (first, second):
        assert_problem(client.get("/users/me", headers=tokens.headers), 401, "invalid_token")
    assert client.get("/users/me", headers=headers).status_code == 200


@pytest.mark.parametrize("user_id", ["999", "9223372036854775808"])
@pytest.mark.parametrize("method, suffix", [("patch", ""), ("delete", ""), ("delete", "/sessions")])
def test_an_unknown_user_is_a_404(client, admin, user_id, method, suffix):
    headers, _ = admin
    kwargs = {"json": {"disabled": True}} if method == "patch" else {}

    response = getattr(client, method)(f"/users/{user_id}{suffix}", headers=headers, **kwargs)

    assert_problem(response, 404)


@pytest.mark.parametrize(
    "body, field",
    [({}, "is_admin"), ({"is_admin": "yes"}, "is_admin"), ({"disabled": 1}, "disabled"),
     ({"username": "root2"}, "username"), ({"is_admin": None}, "is_admin")],
)
def test_bad_flags_are_a_422_and_change_nothing(client, database, admin, body, field):
    headers, travis = admin

    response = client.patch(f"/users/{travis['id']}", json=body, headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert field in {error["field"] for error in problem["errors"]}
    assert flags(database, travis["id"]) == (0, 0)


@pytest.mark.parametrize(
    "method, path, kwargs",
    [("patch", "/users/1", {"json": {"is_admin": True}}), ("delete", "/users/1", {}),
     ("delete", "/users/1/sessions", {})],
)
def test_a_user_who_is_not_an_admin_gets_403(client, database, method, path, kwargs):
    register(client, "travis")
    headers = log_in(client, "travis").headers

    response = getattr(client, method)(path, headers=headers, **kwargs)

    assert_problem(response, 403, "insufficient_scope")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert flags(database, 1) == (0, 0)


def test_each_change_is_an_audit_event_naming_the_administrator(client, database, admin, capsys):
    headers, travis = admin
    root_id = client.get("/users/me", headers=headers).get_json()["id"]
    capsys.readouterr()

    client.patch(f"/users/{travis['id']}", json={"is_admin": True, "disabled": True}, headers=headers)
    client.delete(f"/users/{travis['id']}/sessions", headers=headers)
    client.delete(f"/users/{travis['id']}", headers=headers)

    events = {event["event"]: event for event in audit_events(capsys)}
    for name in ("user_promoted", "user_disabled", "sessions_revoked", "account_deleted"):
        assert events[name]["user_id"] == travis["id"], name
        assert events[name]["admin_id"] == root_id, name


def test_last_login_at_moves_on_login_only(client, database):
    register(client, "travis")
    assert database.execute("SELECT last_login_at FROM users").fetchone()[0] is None
    database.execute("UPDATE users SET last_login_at = '2000-01-01T00:00:00Z'")
    database.commit()

    tokens = log_in(client, "travis")
    after_login = client.get("/users/me", headers=tokens.headers).get_json()["last_login_at"]
    assert after_login != "2000-01-01T00:00:00Z" and after_login.endswith("Z")

    database.execute("UPDATE users SET last_login_at = '2000-01-01T00:00:00Z'")
    database.commit()
    client.post("/auth/refresh", json={"refresh_token": tokens.refresh})
    client.post("/auth", json={"username": "travis", "password": "wrong password"})
    assert database.execute("SELECT last_login_at FROM users").fetchone()[0] == "2000-01-01T00:00:00Z"
