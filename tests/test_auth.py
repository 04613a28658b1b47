"""Registration and login, and who the caller is: POST /users, POST /auth, GET /users[/me]."""
import re
import sqlite3
import time
from contextlib import closing

import bcrypt
import jwt
import pytest

from tests.helpers import CHALLENGE, PASSWORD, SECRET, assert_problem, log_in, post_login, register, users_table

INVALID_CREDENTIALS = "Incorrect username and/or password."
USER_KEYS = {"id", "username", "is_admin", "disabled", "created_at", "last_login_at"}


def stored_hash(database, username):
    return database.execute(
        "SELECT password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()["password_hash"]


def set_stored_hash(database, username, password_hash):
    database.execute(
        "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
    )
    database.commit()


def set_admin(database, user_id, is_admin):
    database.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(is_admin), user_id))
    database.commit()


def insert_user(database, username, password_hash):
    """A user written straight into the database, as the original Koa server left them."""
    database.execute(
        "INSERT INTO users (username, password_hash) VALUES (?, ?)", (username, password_hash)
    )
    database.commit()


def token_claims(response):
    return jwt.decode(
        response.get_json()["access_token"], SECRET, algorithms=["HS256"], issuer="jwt-server"
    )


# POST /users


def test_register_returns_the_user_without_any_hash(client, database):
    response = client.post("/users", json={"username": "Travis", "password": PASSWORD})

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == USER_KEYS
    assert isinstance(body["id"], int)
    assert body["username"] == "Travis"
    assert body["is_admin"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created_at"])
    text = response.get_data(as_text=True)
    assert "$2" not in text and PASSWORD not in text
    row = database.execute("SELECT * FROM users WHERE id = ?", (body["id"],)).fetchone()
    assert row["username"] == "Travis"
    assert bcrypt.checkpw(PASSWORD.encode(), row["password_hash"].encode())


@pytest.mark.parametrize("username", ["abc", "a" * 32, "A.b_c-9", "___", "..."])
def test_register_accepts_usernames_within_the_rules(client, username):
    assert register(client, username)["username"] == username


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("ab", id="2-chars"),
        pytest.param("a" * 33, id="33-chars"),
        pytest.param("", id="empty"),
        pytest.param("with space", id="space"),
        pytest.param("tab\tname", id="tab"),
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("name@host", id="at-sign"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("slash/name", id="slash"),
        pytest.param("j\u00fcrgen", id="non-ascii-letter"),
        pytest.param("\uff41\uff42\uff43", id="fullwidth-letters"),
        pytest.param("abc\0def", id="nul"),
        pytest.param(None, id="null"),
        pytest.param(12345, id="number"),
        pytest.param(["travis"], id="list"),
    ],
)
def test_register_rejects_bad_usernames_and_stores_nothing(client, database, username):
    before = users_table(database)

    response = client.post("/users", json={"username": username, "password": PASSWORD})

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["username"]
    assert users_table(database) == before


def test_register_without_username_is_422(client, database):
    response = client.post("/users", json={"password": PASSWORD})

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["username"]
    assert users_table(database) == []


@pytest.mark.parametrize("taken", ["travis", "TRAVIS", "Travis", "tRaViS"])
def test_register_rejects_a_username_taken_in_any_case(client, database, taken):
    register(client, "travis")
    before = users_table(database)

    response = client.post("/users", json={"username": taken, "password": "another password"})

    body = assert_problem(response, 409, "username_taken")
    assert body["detail"]
    assert users_table(database) == before


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("a" * 8, id="8-ascii-bytes"),
        pytest.param("a" * 72, id="72-ascii-bytes"),
        pytest.param("\u00e9" * 4, id="8-bytes-in-4-chars"),
        pytest.param("\u00e9" * 36, id="72-bytes-of-2-byte-chars"),
        pytest.param("\u20ac" * 24, id="72-bytes-of-3-byte-chars"),
        pytest.param("\U0001f600" * 18, id="72-bytes-of-4-byte-chars"),
    ],
)
def test_register_accepts_passwords_of_8_to_72_utf8_bytes(client, password):
    register(client, "travis", password)

    assert post_login(client, "travis", password).status_code == 200


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("a" * 7, id="7-ascii-bytes"),
        pytest.param("\u00e9" * 3, id="6-bytes-in-3-chars"),
        pytest.param("a" * 73, id="73-ascii-bytes"),
        pytest.param("\u00e9" * 36 + "a", id="73-bytes-in-37-chars"),
        pytest.param("\u20ac" * 24 + "a", id="73-bytes-of-3-byte-chars"),
        pytest.param("\U0001f600" * 18 + "a", id="73-bytes-of-4-byte-chars"),
        pytest.param("password\0tail", id="nul"),
        pytest.param("\0" * 8, id="only-nul"),
        pytest.param("\ud800" * 8, id="lone-surrogates"),
        pytest.param("", id="empty"),
        pytest.param(None, id="null"),
        pytest.param(12345678, id="number"),
    ],
)
def test_register_rejects_bad_passwords_and_stores_nothing(client, database, password):
    response = client.post("/users", json={"username": "travis", "password": password})

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["password"]
    assert users_table(database) == []


def test_register_reports_both_bad_fields_at_once(client, database):
    response = client.post("/users", json={"username": "x", "password": "short"})

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["username", "password"]
    assert body["detail"] == body["errors"][0]["message"]
    assert users_table(database) == []


def test_register_ignores_is_admin_in_the_body(client, database):
    response = client.post(
        "/users", json={"username": "mallory", "password": PASSWORD, "is_admin": True}
    )

    assert response.status_code == 201
    assert response.get_json()["is_admin"] is False
    row = database.execute("SELECT is_admin FROM users WHERE username = 'mallory'").fetchone()
    assert row["is_admin"] == 0
    assert token_claims(post_login(client, "mallory"))["admin"] is False


def test_register_is_403_when_registration_is_disabled(make_app):
    closed = make_app(ALLOW_REGISTRATION=False)

    response = closed.test_client().post(
        "/users", json={"username": "travis", "password": PASSWORD}
    )

    assert_problem(response, 403, "registration_disabled")
    with closing(sqlite3.connect(closed.config["DATABASE"])) as database:
        assert database.execute("SELECT count(*) FROM users").fetchone()[0] == 0


# POST /auth


def test_login_with_json_returns_a_bearer_token_response(app, client):
    register(client)

    response = post_login(client)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.config["ACCESS_TOKEN_TTL"]
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    assert "no-store" in response.headers["Cache-Control"]


def test_login_with_a_form_body_returns_a_token(client):
    user = register(client)

    response = client.post("/auth", data={"username": "travis", "password": PASSWORD})

    assert response.status_code == 200
    assert token_claims(response)["sub"] == str(user["id"])


@pytest.mark.parametrize("spelling", ["TRAVIS", "Travis", "tRAVIs"])
def test_login_looks_the_username_up_without_regard_to_case(client, spelling):
    user = register(client, "travis")

    response = post_login(client, spelling)

    assert response.status_code == 200
    assert token_claims(response)["sub"] == str(user["id"])


USERNAME_REQUIRED = "Username required."
PASSWORD_REQUIRED = "Password required."


MISSING = object()
UNUSABLE = [
    pytest.param(MISSING, id="missing"),
    pytest.param("", id="empty"),
    pytest.param(None, id="null"),
    pytest.param(1, id="number"),
    pytest.param(True, id="bool"),
    pytest.param(["travis"], id="list"),
    pytest.param({"a": 1}, id="object"),
]


def login_body(**fields):
    return {name: value for name, value in fields.items() if value is not MISSING}


@pytest.mark.parametrize("username", UNUSABLE)
def test_login_without_a_usable_username_is_422(client, username):
    register(client)

    response = client.post("/auth", json=login_body(username=username, password=PASSWORD))

    problem = assert_problem(response, 422, "validation_error")
    assert problem["detail"] == USERNAME_REQUIRED
    assert problem["errors"] == [{"field": "username", "message": USERNAME_REQUIRED}]


@pytest.mark.parametrize("password", UNUSABLE)
def test_login_without_a_usable_password_is_422(client, password):
    register(client)

    response = client.post("/auth", json=login_body(username="travis", password=password))

    problem = assert_problem(response, 422, "validation_error")
    assert problem["detail"] == PASSWORD_REQUIRED
    assert problem["errors"] == [{"field": "password", "message": PASSWORD_REQUIRED}]


def test_login_with_an_empty_object_reports_both_fields(client):
    response = client.post("/auth", json={})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["detail"] == USERNAME_REQUIRED
    assert [error["field"] for error in problem["errors"]] == ["username", "password"]


@pytest.mark.parametrize(
    "form, detail",
    [
        ({"password": PASSWORD}, USERNAME_REQUIRED),
        ({"username": "", "password": PASSWORD}, USERNAME_REQUIRED),
        ({"username": "travis"}, PASSWORD_REQUIRED),
        ({"username": "travis", "password": ""}, PASSWORD_REQUIRED),
    ],
)
def test_login_form_without_username_or_password_is_422(client, form, detail):
    register(client)

    response = client.post("/auth", data=form)

    assert assert_problem(response, 422, "validation_error")["detail"] == detail


def test_unknown_user_and_wrong_password_get_identical_bodies(client):
    register(client)

    wrong_password = post_login(client, "travis", "not the password")
    unknown_user = post_login(client, "nobody", "not the password")

    for response in (wrong_password, unknown_user):
        assert assert_problem(response, 401, "invalid_credentials")["detail"] == INVALID_CREDENTIALS
    assert wrong_password.get_data() == unknown_user.get_data()


def test_unknown_user_and_wrong_password_get_identical_headers(client):
    register(client)

    wrong_password = post_login(client, "travis", "not the password")
    unknown_user = post_login(client, "nobody", "not the password")

    def comparable(response):
        return sorted((name, value) for name, value in response.headers if name != "X-Request-ID")

    assert comparable(wrong_password) == comparable(unknown_user)


def test_failed_login_carries_the_bearer_challenge(client):
    """Every 401 carries the WWW-Authenticate challenge, the login's included."""
    register(client)

    response = post_login(client, "travis", "not the password")

    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate") == CHALLENGE


@pytest.mark.parametrize(
    "username, password",
    [
        pytest.param("travis", "a" * 72 + "b", id="73-bytes-whose-first-72-are-right"),
        pytest.param("travis", "a" * 1000, id="1000-bytes"),
        pytest.param("travis", "\u00e9" * 37, id="74-bytes-of-2-byte-chars"),
        pytest.param("travis", "a" * 72 + "\0", id="right-password-then-nul"),
        pytest.param("travis", "\0" + "a" * 72, id="nul-first"),
        pytest.param("travis", "\ud800" + "a" * 72, id="lone-surrogate"),
        pytest.param("nobody", "a" * 73, id="unknown-user-long-password"),
        pytest.param("nobody", "a\0b", id="unknown-user-nul"),
        pytest.param("trav\0is", "a" * 72, id="nul-in-username"),
        pytest.param("trav\udcffis", "a" * 72, id="lone-surrogate-in-username"),
    ],
)
def test_login_with_a_password_bcrypt_cannot_take_is_401_not_500(client, username, password):
    register(client, "travis", "a" * 72)

    response = post_login(client, username, password)

    assert assert_problem(response, 401, "invalid_credentials")["detail"] == INVALID_CREDENTIALS


def test_login_form_with_nul_in_password_is_401(client):
    register(client, "travis", "a" * 72)

    response = client.post("/auth", data={"username": "travis", "password": "a" * 72 + "\0"})

    assert_problem(response, 401, "invalid_credentials")


def test_token_claims_name_the_user_as_a_string_with_the_configured_lifetime(app, client):
    user = register(client)
    before = int(time.time())

    claims = token_claims(post_login(client))

    assert claims["sub"] == str(user["id"])
    assert claims["exp"] - claims["iat"] == app.config["ACCESS_TOKEN_TTL"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["iss"] == "jwt-server"
    assert claims["admin"] is False
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_token_lifetime_follows_access_token_ttl(make_app):
    short = make_app(ACCESS_TOKEN_TTL=120)
    client = short.test_client()
    register(client)

    response = post_login(client)

    assert response.get_json()["expires_in"] == 120
    claims = token_claims(response)
    assert claims["exp"] - claims["iat"] == 120


def test_each_login_gets_a_token_with_a_new_jti(client):
    register(client)

    first, second = token_claims(post_login(client)), token_claims(post_login(client))

    assert first["jti"] != second["jti"]


def test_admin_token_carries_admin_true(client, database):
    user = register(client)
    set_admin(database, user["id"], True)

    assert token_claims(post_login(client))["admin"] is True


# Stored hashes: other costs, the Koa server's $2a$, broken ones


def test_login_rehashes_a_stored_hash_of_another_cost(app, client, database):
    register(client)
    old_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    set_stored_hash(database, "travis", old_hash)

    assert post_login(client).status_code == 200

    new_hash = stored_hash(database, "travis")
    assert new_hash != old_hash
    assert new_hash.startswith(f"$2b${app.config['BCRYPT_ROUNDS']:02d}$")
    assert bcrypt.checkpw(PASSWORD.encode(), new_hash.encode())
    assert post_login(client).status_code == 200


def test_wrong_password_leaves_a_hash_of_another_cost_alone(client, database):
    register(client)
    old_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    set_stored_hash(database, "travis", old_hash)

    assert post_login(client, "travis", "not the password").status_code == 401

    assert stored_hash(database, "travis") == old_hash


def test_login_leaves_a_hash_of_the_configured_cost_alone(client, database):
    register(client)
    current = stored_hash(database, "travis")

    assert post_login(client).status_code == 200

    assert stored_hash(database, "travis") == current


def test_koa_server_2a_hash_logs_in_and_is_rehashed(client, database):
    koa_hash = "$2a$" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()[4:]
    assert koa_hash.startswith("$2a$10$")
    insert_user(database, "koa", koa_hash)

    response = post_login(client, "koa")

    assert response.status_code == 200
    new_hash = stored_hash(database, "koa")
    assert new_hash.startswith("$2b$04$")
    assert bcrypt.checkpw(PASSWORD.encode(), new_hash.encode())


@pytest.mark.parametrize(
    "broken_hash",
    [
        pytest.param("not-a-bcrypt-hash", id="text"),
        pytest.param("", id="empty"),
        pytest.param("$2b$04$short", id="truncated"),
        pytest.param("$2b$04$" + "!" * 53, id="bad-alphabet"),
        pytest.param("$2z$04$" + "a" * 53, id="unknown-variant"),
        pytest.param("$2b$99$" + "a" * 53, id="impossible-cost"),
        pytest.param("$2b$04$" + "\u00e9" * 53, id="non-ascii"),
        pytest.param("plaintext " + PASSWORD, id="plaintext"),
    ],
)
def test_login_against_a_malformed_stored_hash_is_401_not_500(client, database, broken_hash):
    insert_user(database, "broken", broken_hash)

    response = post_login(client, "broken")

    assert_problem(response, 401, "invalid_credentials")
    assert stored_hash(database, "broken") == broken_hash


# GET /users/me


def test_me_returns_the_caller(client, auth_headers, database):
    row = database.execute("SELECT * FROM users WHERE username = 'travis'").fetchone()

    response = client.get("/users/me", headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == {
        "id": row["id"],
        "username": "travis",
        "is_admin": False,
        "disabled": False,
        "created_at": row["created_at"],
        "last_login_at": row["last_login_at"],
    }
    assert row["last_login_at"] is not None
    assert "no-store" in response.headers["Cache-Control"]


def test_me_without_a_token_is_401_with_a_bare_challenge(client):
    response = client.get("/users/me")

    assert_problem(response, 401, "authentication_required")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


# GET /users


def test_user_list_is_403_for_a_normal_user(client, auth_headers):
    response = client.get("/users", headers=auth_headers)

    assert_problem(response, 403, "insufficient_scope")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(CHALLENGE)
    assert 'error="insufficient_scope"' in challenge


def test_user_list_without_a_token_is_401(client):
    response = client.get("/users")

    assert_problem(response, 401, "authentication_required")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_user_list_gives_an_admin_every_user_by_id(client, database):
    created = [register(client, name) for name in ("zed", "amy", "mike")]
    set_admin(database, created[1]["id"], True)
    headers = log_in(client, "amy").headers

    response = client.get("/users", headers=headers)

    assert response.status_code == 200
    users = response.get_json()
    assert [user["username"] for user in users] == ["zed", "amy", "mike"]
    assert [user["id"] for user in users] == sorted(user["id"] for user in created)
    assert all(set(user) == USER_KEYS for user in users)
    assert [user["is_admin"] for user in users] == [False, True, False]
    assert "$2" not in response.get_data(as_text=True)


def test_user_made_admin_after_login_gets_the_list_at_once(client, database):
    user = register(client)
    headers = log_in(client).headers
    token = headers["Authorization"].split()[1]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["admin"] is False
    assert client.get("/users", headers=headers).status_code == 403

    set_admin(database, user["id"], True)

    assert client.get("/users", headers=headers).status_code == 200


def test_admin_demoted_after_login_loses_the_list_at_once(client, database):
    user = register(client)
    set_admin(database, user["id"], True)
    headers = log_in(client).headers
    token = headers["Authorization"].split()[1]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["admin"] is True
    assert client.get("/users", headers=headers).status_code == 200

    set_admin(database, user["id"], False)

    response = client.get("/users", headers=headers)
    assert_problem(response, 403, "insufficient_scope")
    assert client.get("/users/me", headers=headers).get_json()["is_admin"] is False
