"""Cookie mode (AUTH_COOKIE=true): the refresh token in an HttpOnly cookie,
the CSRF checks on refreshing with it, and the configuration it needs.
"""
import re

import pytest

from jwt_server import create_app
from jwt_server.config import ConfigError, load_config
from tests.helpers import (
    DEFAULT_REFRESH_TTL,
    PASSWORD,
    REFRESH_TOKEN,
    SECRET,
    assert_problem,
    database_bytes,
    random_part,
    register,
    snapshot,
)

APP_ORIGIN = "https://app.example"
CSRF_HEADER = {"X-Requested-With": "XMLHttpRequest"}
COOKIE_MODE = {"AUTH_COOKIE": True, "CORS_ORIGINS": [APP_ORIGIN]}


@pytest.fixture
def cookie_client(make_app):
    """A client of an app in cookie mode that allows APP_ORIGIN, with travis registered."""
    client = make_app(**COOKIE_MODE).test_client()
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
def test_cookie_login_puts_the_refresh_token_in_a_strict_http_only_cookie(make_app, secure):
    app = make_app(**COOKIE_MODE, COOKIE_SECURE=secure)
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
def test_cookie_refresh_failing_the_csrf_checks_is_403_and_leaves_the_session_alone(cookie_client, database, headers):
    cookie_login(cookie_client)
    before = snapshot(database)

    response = cookie_refresh(cookie_client, **headers)

    assert_problem(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert snapshot(database) == before
    assert cookie_refresh(cookie_client, Origin=APP_ORIGIN, **CSRF_HEADER).status_code == 200


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
