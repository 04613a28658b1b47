import re
import sqlite3

import pytest

from jwt_server import create_app

# The start_gunicorn fixture of the *_e2e.py files lives with the launcher.
pytest_plugins = ["tests.servers"]

SECRET = "test-secret-that-is-at-least-32-bytes-long"
PASSWORD = "correct horse battery"


# The status phrases API.md's problem documents carry as "title".
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def assert_problem(response, status, code=None):
    """``response`` is an RFC 9457 problem document for ``status`` (and ``code``); returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "about:blank"
    assert body["title"] == TITLES[status]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"].strip()
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", body["code"]), body["code"]
    if code is not None:
        assert body["code"] == code
    return body


def build_app(database, **settings):
    """An app on the database file ``database``, with the cheapest bcrypt cost and ``settings``."""
    return create_app(
        {"TESTING": True, "DATABASE": str(database), "JWT_SECRET": SECRET, "BCRYPT_ROUNDS": 4, **settings}
    )


@pytest.fixture
def app(tmp_path):
    """An app on a fresh temporary database."""
    return build_app(tmp_path / "test.sqlite")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def database(app):
    """A separate connection to the app's database, to check what it holds."""
    connection = sqlite3.connect(app.config["DATABASE"])
    connection.row_factory = sqlite3.Row
    yield connection
    connection.close()


def register(client, username="travis", password=PASSWORD):
    response = client.post("/users", json={"username": username, "password": password})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def login(client, username="travis", password=PASSWORD):
    """Log in and return the Authorization header for the token."""
    response = client.post("/auth", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


@pytest.fixture
def auth_headers(client):
    """A registered user, logged in: the Authorization header."""
    register(client)
    return login(client)
