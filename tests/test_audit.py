"""The audit log (one JSON line per security event on stderr), request ids, and the
headers on responses that carry a token or user data.

The audit handler writes to the sys.stderr of the moment, so pytest's capsys
sees what the test client's requests log, and click's runner what a command logs.
"""
import hashlib
import json
import re

import pytest

from jwt_server import accounts
from tests.helpers import NEW_PASSWORD, PASSWORD, SECRET, Tokens, log_in, register

WRONG = "correct horse battery staple?"
GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def audit_events(text):
    """Every audit line in ``text``; every non-empty line must be one JSON object."""
    events = []
    for line in text.splitlines():
        if line.strip():
            event = json.loads(line)
            assert isinstance(event, dict) and "event" in event, line
            events.append(event)
    return events


@pytest.fixture
def runner(app):
    """The audit lines of a command are read from its stderr alone."""
    return app.test_cli_runner(separate_stderr=True)


def logged(capsys):
    return audit_events(capsys.readouterr().err)


def only_event(events, name):
    matching = [event for event in events if event["event"] == name]
    assert len(matching) == 1, events
    return matching[0]


def assert_logged(events, name, response, user_id, ip="127.0.0.1"):
    """The one ``name`` line, naming the response's request id, the user and the IP."""
    event = only_event(events, name)
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert event["user_id"] == user_id
    assert event["ip"] == ip
    return event


def session_ids(client, headers):
    response = client.get("/users/me/sessions", headers=headers)
    assert response.status_code == 200
    return {row["id"]: row["current"] for row in response.get_json()}


def current_session(client, headers):
    return next(sid for sid, current in session_ids(client, headers).items() if current)


# One line per event


def test_a_login_is_logged_as_login_succeeded(client, capsys):
    user = register(client)
    capsys.readouterr()

    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})

    event = assert_logged(logged(capsys), "login_succeeded", response, user["id"])
    assert event["session_id"] == current_session(client, Tokens(response.get_json()).headers)


def test_a_wrong_password_is_logged_as_login_failed_with_the_user(client, capsys):
    user = register(client)
    capsys.readouterr()

    response = client.post("/auth", json={"username": "travis", "password": WRONG})

    assert response.status_code == 401
    events = logged(capsys)
    assert_logged(events, "login_failed", response, user["id"])
    assert [event["event"] for event in events] == ["login_failed"]


def test_an_unknown_username_is_logged_as_login_failed_without_a_user(client, capsys):
    response = client.post("/auth", json={"username": "nobody", "password": WRONG})

    assert response.status_code == 401
    assert_logged(logged(capsys), "login_failed", response, None)


def test_a_lockout_is_logged_as_login_throttled_with_the_user(client, capsys):
    user = register(client)
    for _ in range(5):
        assert client.post("/auth", json={"username": "travis", "password": WRONG}).status_code == 401
    capsys.readouterr()

    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})

    assert response.status_code == 429
    events = logged(capsys)
    assert [event["event"] for event in events] == ["login_throttled"]
    event = assert_logged(events, "login_throttled", response, user["id"])
    assert event["retry_after"] == int(response.headers["Retry-After"])


def test_the_failure_that_starts_a_lockout_says_so(client, capsys):
    register(client)
    capsys.readouterr()
    for _ in range(4):
        client.post("/auth", json={"username": "travis", "password": WRONG})
    assert [event["locked_out"] for event in logged(capsys)] == [False] * 4

    client.post("/auth", json={"username": "travis", "password": WRONG})

    assert only_event(logged(capsys), "login_failed")["locked_out"] is True


def test_a_registration_is_logged_as_user_registered(client, capsys):
    response = client.post("/users", json={"username": "travis", "password": PASSWORD})

    assert response.status_code == 201
    assert_logged(logged(capsys), "user_registered", response, response.get_json()["id"])


def test_a_rejected_registration_is_not_logged(client, capsys):
    register(client)
    capsys.readouterr()

    assert client.post("/users", json={"username": "TRAVIS", "password": PASSWORD}).status_code == 409
    assert client.post("/users", json={"username": "x", "password": PASSWORD}).status_code == 422

    assert logged(capsys) == []


def test_a_password_change_is_logged_as_password_changed(client, capsys):
    user = register(client)
    headers = log_in(client).headers
    log_in(client)
    capsys.readouterr()

    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    response = client.put("/users/me/password", json=change, headers=headers)

    assert response.status_code == 204
    event = assert_logged(logged(capsys), "password_changed", response, user["id"])
    assert event["sessions_revoked"] == 1


def test_a_refused_password_change_is_not_logged_as_password_changed(client, capsys):
    register(client)
    headers = log_in(client).headers
    capsys.readouterr()

    response = client.put(
        "/users/me/password", json={"current_password": WRONG, "new_password": NEW_PASSWORD}, headers=headers
    )

    assert response.status_code == 403
    assert "password_changed" not in [event["event"] for event in logged(capsys)]


@pytest.mark.parametrize(
    "method, path, body, action",
    [
        ("PUT", "/users/me/password", {"current_password": WRONG, "new_password": NEW_PASSWORD}, "change_password"),
        ("DELETE", "/users/me", {"password": WRONG}, "delete_account"),
    ],
)
def test_a_wrong_password_at_a_password_route_is_logged_as_wrong_password(client, capsys, method, path, body, action):
    user = register(client)
    headers = log_in(client).headers
    capsys.readouterr()

    response = client.open(path, method=method, json=body, headers=headers)

    assert response.status_code == 403
    event = assert_logged(logged(capsys), "wrong_password", response, user["id"])
    assert (event["action"], event["locked_out"]) == (action, False)
    assert WRONG not in json.dumps(event)


def test_a_login_whose_password_changed_under_it_is_logged_as_login_failed(client, capsys, monkeypatch):
    user = register(client)
    real_find = accounts.find_by_username
    # As if the password changed between this login's check and its session:
    # the credentials version it read is no longer the user's.
    monkeypatch.setattr(
        accounts, "find_by_username", lambda db, username: {**dict(real_find(db, username)), "credentials_version": -1}
    )
    capsys.readouterr()

    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})

    assert response.status_code == 401
    event = assert_logged(logged(capsys), "login_failed", response, user["id"])
    assert event["reason"] == "credentials_changed"


def test_a_logout_is_logged_as_session_revoked(client, capsys):
    user = register(client)
    headers = log_in(client).headers
    session_id = current_session(client, headers)
    capsys.readouterr()

    response = client.post("/auth/logout", headers=headers)

    assert response.status_code == 204
    event = assert_logged(logged(capsys), "session_revoked", response, user["id"])
    assert event["session_id"] == session_id


def test_revoking_one_session_is_logged_as_session_revoked(client, capsys):
    user = register(client)
    headers = log_in(client).headers
    other = current_session(client, log_in(client).headers)
    capsys.readouterr()

    response = client.delete(f"/users/me/sessions/{other}", headers=headers)

    assert response.status_code == 204
    event = assert_logged(logged(capsys), "session_revoked", response, user["id"])
    assert event["session_id"] == other


def test_revoking_someone_elses_session_is_not_logged(client, capsys):
    register(client)
    register(client, "alice")
    alices = current_session(client, log_in(client, "alice").headers)
    headers = log_in(client).headers
    capsys.readouterr()

    assert client.delete(f"/users/me/sessions/{alices}", headers=headers).status_code == 404

    assert logged(capsys) == []


def test_revoking_every_session_is_logged_as_sessions_revoked(client, capsys):
    user = register(client)
    headers = log_in(client).headers
    log_in(client)
    log_in(client)
    capsys.readouterr()

    response = client.delete("/users/me/sessions", headers=headers)

    assert response.status_code == 204
    event = assert_logged(logged(capsys), "sessions_revoked", response, user["id"])
    assert event["count"] == 3


def test_a_reused_refresh_token_is_logged_as_refresh_token_reused(client, capsys):
    user = register(client)
    tokens = log_in(client)
    session_id = current_session(client, tokens.headers)
    assert client.post("/auth/refresh", json={"refresh_token": tokens.refresh}).status_code == 200
    capsys.readouterr()

    response = client.post("/auth/refresh", json={"refresh_token": tokens.refresh})

    assert response.get_json()["code"] == "refresh_token_reused"
    event = assert_logged(logged(capsys), "refresh_token_reused", response, user["id"])
    assert event["session_id"] == session_id


def test_an_account_deletion_is_logged_as_account_deleted(client, capsys):
    user = register(client)
    headers = log_in(client).headers
    capsys.readouterr()

    response = client.delete("/users/me", json={"password": PASSWORD}, headers=headers)

    assert response.status_code == 204
    assert_logged(logged(capsys), "account_deleted", response, user["id"])


def test_the_ip_in_the_line_is_the_clients(client, capsys):
    user = register(client)
    capsys.readouterr()

    elsewhere = {"REMOTE_ADDR": "10.0.0.2"}

    response = client.post("/auth", json={"username": "travis", "password": PASSWORD}, environ_overrides=elsewhere)

    assert_logged(logged(capsys), "login_succeeded", response, user["id"], ip="10.0.0.2")


def test_cli_create_user_and_set_password_are_logged(runner, database):
    created = runner.invoke(args=["create-user", "carol", "--admin"], input=f"{PASSWORD}\n{PASSWORD}\n")
    changed = runner.invoke(args=["set-password", "carol"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")

    assert created.exit_code == 0 and changed.exit_code == 0, (created.output, changed.output)
    carol = database.execute("SELECT id FROM users WHERE username = 'carol'").fetchone()["id"]
    registered = only_event(audit_events(created.stderr), "user_registered")
    assert (registered["user_id"], registered["via"], registered["admin"]) == (carol, "cli", True)
    password_changed = only_event(audit_events(changed.stderr), "password_changed")
    assert (password_changed["user_id"], password_changed["via"]) == (carol, "cli")


# Request ids


def test_a_client_request_id_is_echoed_and_logged(client, capsys):
    register(client)
    capsys.readouterr()

    response = client.post(
        "/auth", json={"username": "travis", "password": PASSWORD}, headers={"X-Request-ID": "abc-123"}
    )

    assert response.headers["X-Request-ID"] == "abc-123"
    assert only_event(logged(capsys), "login_succeeded")["request_id"] == "abc-123"


@pytest.mark.parametrize("request_id", ['abc"}{"event":"forged', "r" * 129, "two words"])
def test_an_unsafe_client_request_id_is_replaced_in_the_header_and_the_line(client, capsys, request_id):
    register(client)
    capsys.readouterr()

    response = client.post(
        "/auth", json={"username": "travis", "password": WRONG}, headers={"X-Request-ID": request_id}
    )

    replaced = response.headers["X-Request-ID"]
    assert GENERATED_REQUEST_ID.fullmatch(replaced)
    events = logged(capsys)
    assert [event["event"] for event in events] == ["login_failed"]
    assert events[0]["request_id"] == replaced


def test_each_request_gets_its_own_request_id_in_its_line(client, capsys):
    register(client)
    capsys.readouterr()

    responses = [client.post("/auth", json={"username": "travis", "password": WRONG}) for _ in range(3)]

    ids = [event["request_id"] for event in logged(capsys)]
    assert ids == [response.headers["X-Request-ID"] for response in responses]
    assert len(set(ids)) == 3


# No secret in the log


def refresh_token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def test_the_log_never_holds_a_password_token_or_hash(client, runner, database, capsys):
    """Every event, every secret the scenario used, grepped in everything logged."""
    secrets, cli_output = [SECRET, PASSWORD, NEW_PASSWORD, WRONG], ""

    def stored_hash(username):
        password_hash = database.execute(
            "SELECT password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()["password_hash"]
        secrets.extend([password_hash, password_hash[7:]])  # with and without "$2b$04$"

    def tokens_of(response):
        assert response.status_code == 200, response.get_json()
        tokens = response.get_json()
        secrets.extend(
            [tokens["access_token"], tokens["access_token"].rsplit(".", 1)[1],
             tokens["refresh_token"], refresh_token_hash(tokens["refresh_token"])]
        )
        return tokens

    def auth(password=PASSWORD):
        return tokens_of(client.post("/auth", json={"username": "travis", "password": password}))

    register(client)
    stored_hash("travis")
    first = auth()
    tokens_of(client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}))
    assert client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    # A near miss, and a password typed into the username field.
    assert client.post("/auth", json={"username": "travis", "password": WRONG}).status_code == 401
    assert client.post("/auth", json={"username": PASSWORD, "password": "travis"}).status_code == 401
    guesses = [f"guess number {n} for the ghost" for n in range(6)]
    secrets.extend(guesses)
    statuses = [client.post("/auth", json={"username": "ghost", "password": g}).status_code for g in guesses]
    assert statuses == [401] * 5 + [429]

    current = Tokens(auth()).headers
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/users/me/password", json=change, headers=current).status_code == 204
    stored_hash("travis")
    other = current_session(client, Tokens(auth(NEW_PASSWORD)).headers)
    assert client.delete(f"/users/me/sessions/{other}", headers=current).status_code == 204
    assert client.delete("/users/me/sessions", headers=current).status_code == 204
    assert client.post("/auth/logout", headers=Tokens(auth(NEW_PASSWORD)).headers).status_code == 204
    last = Tokens(auth(NEW_PASSWORD)).headers
    assert client.delete("/users/me", json={"password": NEW_PASSWORD}, headers=last).status_code == 204

    commands = [("create-user", "the command line passphrase"), ("set-password", "another command line passphrase")]
    for command, password in commands:
        secrets.append(password)
        result = runner.invoke(args=[command, "carol"], input=f"{password}\n{password}\n")
        assert result.exit_code == 0, result.output
        cli_output += result.output + result.stderr
        stored_hash("carol")

    log = capsys.readouterr().err + cli_output
    names = {event["event"] for event in audit_events(json_lines(log))}
    assert names >= {
        "login_succeeded", "login_failed", "login_throttled", "user_registered", "password_changed",
        "session_revoked", "sessions_revoked", "refresh_token_reused", "account_deleted",
    }
    for secret in secrets:
        assert secret not in log, f"the log holds a secret: {secret[:12]}..."


def json_lines(log):
    """The JSON lines of ``log``, leaving out the commands' own output (ids, prompts)."""
    return "\n".join(line for line in log.splitlines() if line.startswith("{"))


# Headers on tokens and user data


def test_token_and_user_data_responses_carry_nosniff_and_no_store(client, database):
    registered = client.post("/users", json={"username": "travis", "password": PASSWORD})
    database.execute("UPDATE users SET is_admin = 1")
    database.commit()
    logged_in = client.post("/auth", json={"username": "travis", "password": PASSWORD})
    headers = Tokens(logged_in.get_json()).headers
    refreshed = client.post("/auth/refresh", json={"refresh_token": logged_in.get_json()["refresh_token"]})
    headers = Tokens(refreshed.get_json()).headers
    created = client.post("/pets", json={"name": "Bunny", "species": "dog"}, headers=headers)
    pet = f"/pets/{created.get_json()['id']}"
    responses = {
        "POST /users": registered,
        "POST /auth": logged_in,
        "POST /auth/refresh": refreshed,
        "POST /pets": created,
        "GET /users/me": client.get("/users/me", headers=headers),
        "GET /users": client.get("/users", headers=headers),
        "GET /users/me/sessions": client.get("/users/me/sessions", headers=headers),
        "GET /pets": client.get("/pets", headers=headers),
        "GET /my-pets": client.get("/my-pets", headers=headers),
        "GET /pets/<id>": client.get(pet, headers=headers),
        "PATCH /pets/<id>": client.patch(pet, json={"name": "Bun"}, headers=headers),
        "PUT /pets/<id>": client.put(pet, json={"name": "Bun", "species": None}, headers=headers),
    }

    for route, response in responses.items():
        assert response.status_code in (200, 201), (route, response.get_json())
        assert response.headers.get("X-Content-Type-Options") == "nosniff", route
        assert response.cache_control.no_store, route
