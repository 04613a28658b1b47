"""What several test files share: the test settings, the problem-document check,
logging in, the database checks, sessions, the attack scene, processes at a barrier,
the npm packages of the end-to-end tests.

Fixtures live in conftest.py; the real gunicorn in servers.py.
"""
import base64
import hashlib
import inspect
import io
import json
import multiprocessing
import os
import re
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import click.testing
import jwt
import pytest
from flask.testing import FlaskCliRunner

from jwt_server.config import ENVIRONMENT_VARIABLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-that-is-at-least-32-bytes-long"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
# What every app a test builds gets: a known secret and the cheapest bcrypt cost.
TEST_SETTINGS = {"TESTING": True, "JWT_SECRET": SECRET, "BCRYPT_ROUNDS": 4}
# The WWW-Authenticate challenge of every 401, before any error="..." parameter.
CHALLENGE = 'Bearer realm="jwt-server"'
DEFAULT_REFRESH_TTL = 30 * 24 * 3600
INT64_MAX = 2**63 - 1  # the largest id SQLite stores
# A change to DROP removes that claim or header field.
DROP = object()


def clean_environment(**settings):
    """This process's environment without any jwt-server setting, plus ``settings``."""
    environ = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT_VARIABLES}
    environ.update(settings)
    return environ


# Problem documents (RFC 9457): "type" is about:blank, so "title" is the
# status's reason phrase, "code" a snake_case word a client can switch on.
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
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


def assert_invalid_token(response):
    """A 401 invalid_token problem whose challenge says so."""
    assert_problem(response, 401, "invalid_token")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(CHALLENGE)
    assert 'error="invalid_token"' in challenge


# Users and their tokens


def bearer(access_token, **headers):
    return {"Authorization": f"Bearer {access_token}", **headers}


@dataclass(frozen=True)
class Tokens:
    """What one login or refresh handed the client: the token response's body."""

    body: dict

    @property
    def access(self):
        return self.body["access_token"]

    @property
    def refresh(self):
        """None in cookie mode, where the refresh token is a cookie."""
        return self.body.get("refresh_token")

    @property
    def headers(self):
        return bearer(self.access)

    @property
    def claims(self):
        return jwt.decode(self.access, SECRET, algorithms=["HS256"], issuer="jwt-server")

    @property
    def session_id(self):
        return int(self.claims["sid"])


def build_app(database, **settings):
    """An app with the test settings on the database file ``database`` (several apps may share one)."""
    from jwt_server import create_app

    app = create_app({**TEST_SETTINGS, "DATABASE": str(database), **settings})
    app.test_cli_runner_class = CliRunner
    return app


class EndingInput(io.RawIOBase):
    """Input that ends as it does for a real prompt (getpass, input()): with EOFError."""

    def __init__(self, data):
        self.data = data

    def readable(self):
        return True

    def readinto(self, buffer):
        if buffer and not self.data:
            raise EOFError
        count = min(len(buffer), len(self.data))
        buffer[:count], self.data = self.data[:count], self.data[count:]
        return count


# click 8.1 (the last click for Python 3.9, so PyPy's) gives a result's
# stderr apart only if told to, and then leaves it out of ``output``.
CLICK_MIXES_STDERR = "mix_stderr" in inspect.signature(click.testing.CliRunner.__init__).parameters


class CliRunner(FlaskCliRunner):
    """``app.test_cli_runner()``, the same on click 8.1 as on 8.2 and later.

    Its ``input`` ends with EOFError, as a terminal's or a pipe's does: click
    8.1's runner answers an empty line forever instead, and a prompt that asks
    again would never end. With ``separate_stderr``, a result has ``stderr``
    on click 8.1 too (and an ``output`` without it there).
    """

    def __init__(self, app, separate_stderr=False, **kwargs):
        if CLICK_MIXES_STDERR:
            kwargs.setdefault("mix_stderr", not separate_stderr)
        super().__init__(app, **kwargs)

    def invoke(self, cli=None, args=None, input=None, **kwargs):
        if isinstance(input, str):
            input = EndingInput(input.encode())
        return super().invoke(cli, args, input=input, **kwargs)


def register(client, username="travis", password=PASSWORD):
    response = client.post("/users", json={"username": username, "password": password})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def log_in(client, username="travis", password=PASSWORD, **kwargs):
    """POST /auth, which must succeed: the tokens. ``kwargs`` go to the request (headers, environ_base)."""
    response = client.post("/auth", json={"username": username, "password": password}, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return Tokens(response.get_json())


def post_login(client, username="travis", password=PASSWORD):
    """POST /auth: the response, whatever it is."""
    return client.post("/auth", json={"username": username, "password": password})


def can_log_in(client, username, password):
    """Whether POST /auth lets ``username`` in with ``password`` (it must answer 200 or 401)."""
    response = post_login(client, username, password)
    assert response.status_code in (200, 401), response.get_data(as_text=True)
    return response.status_code == 200


# Hand-made tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value):
    return b64url(json.dumps(value).encode())


# The database, before and after


def users_table(database):
    """Every row and column of the users table, to prove a request changed nothing."""
    return [tuple(row) for row in database.execute("SELECT * FROM users ORDER BY id")]


def table(database, name):
    return [tuple(row) for row in database.execute(f"SELECT * FROM {name} ORDER BY 1")]


def count(database, sql, *parameters):
    return database.execute(sql, parameters).fetchone()[0]


def table_names(connection):
    """The tables of the database behind ``connection`` (either engine), schema bookkeeping aside."""
    if isinstance(connection, sqlite3.Connection):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename != 'schema_version'"
    return sorted(row[0] for row in connection.execute(sql))


def snapshot(database):
    """Every row of every table, to compare before and after a request."""
    return {
        table: sorted((tuple(row) for row in database.execute(f'SELECT * FROM "{table}"')), key=repr)
        for table in table_names(database)
    }


def assert_unchanged(database, before, ignoring=()):
    """Nothing changed but ``ignoring`` (the login throttle counts failures, as it must)."""
    after = snapshot(database)
    for table in set(before) | set(after):
        if table not in ignoring:
            assert after.get(table) == before.get(table), f"table {table} changed"


def database_bytes(app):
    """Where a token could hide: the SQLite file and its write-ahead log, or every row PostgreSQL holds."""
    if not app.config["DATABASE"].startswith("postgresql://"):
        path = Path(app.config["DATABASE"])
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    with open_database(app.config["DATABASE"]) as database:
        return repr(snapshot(database)).encode()


def open_database(location):
    """A separate connection to the database at ``location`` (either engine), to check what it holds."""
    if location.startswith("postgresql://"):
        from jwt_server import postgres

        return postgres.connect(location)
    connection = sqlite3.connect(location)
    connection.row_factory = sqlite3.Row
    return connection


# A database as the original Koa server left it

KOA_USERS = (
    "CREATE TABLE users (id integer not null primary key autoincrement, "
    "username varchar(255), passwordHash varchar(255))"
)
KOA_PETS = (
    "CREATE TABLE pets (id integer not null primary key autoincrement, "
    "user_id integer, name varchar(255), species varchar(255))"
)


def koa_hash(password):
    """A hash as the Koa server's bcryptjs stored it: ``$2a$``, cost 10, of the first 72 bytes only."""
    hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(10)).decode()
    assert hashed.startswith("$2b$10$")
    return "$2a$" + hashed[4:]


def build_koa_database(path, users, pets=()):
    """``users``: (id, username, password); ``pets``: (id, user_id, name, species). Returns ``path``."""
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(KOA_USERS)
        connection.execute(KOA_PETS)
        connection.executemany(
            "INSERT INTO users (id, username, passwordHash) VALUES (?, ?, ?)",
            [(user_id, username, koa_hash(password)) for user_id, username, password in users],
        )
        connection.executemany("INSERT INTO pets (id, user_id, name, species) VALUES (?, ?, ?, ?)", pets)
    connection.close()
    return path


# Sessions


def sha256(token):
    return hashlib.sha256(token.encode()).hexdigest()


# <session id>.<generation>.<256 random bits>.<tag>: URL-safe as it is.
REFRESH_TOKEN = r"[1-9][0-9]*\.(0|[1-9][0-9]*)\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{22}"


def random_part(refresh_token):
    """The 256 random bits of a refresh token, of which the server keeps a SHA-256."""
    return refresh_token.split(".")[2]


def refresh(client, refresh_token):
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def refreshed(client, tokens):
    """Rotate ``tokens`` successfully and return the new pair."""
    response = refresh(client, tokens.refresh)
    assert response.status_code == 200, response.get_data(as_text=True)
    return Tokens(response.get_json())


def session_row(database, session_id):
    return database.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()


def set_expires_at(database, session_id, expires_at):
    database.execute("UPDATE sessions SET expires_at = ? WHERE id = ?", (expires_at, session_id))
    database.commit()


def assert_access_works(client, tokens):
    response = client.get("/users/me", headers=tokens.headers)
    assert response.status_code == 200, response.get_data(as_text=True)


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


# The attack files' scene


class Scene:
    """A victim with a pet and a live session, and an attacker with a real token of their own."""

    def __init__(self, client):
        self.client = client
        self.victim_id = register(client, "victim")["id"]
        tokens = log_in(client, "victim")
        self.victim_token, self.victim_refresh_token = tokens.access, tokens.refresh
        self.victim_claims = tokens.claims
        self.victim_pet = self.call("POST", "/pets", self.victim_token, json={"name": "Bunny"}).get_json()["id"]
        self.attacker_id = register(client, "mallory")["id"]
        self.attacker_token = log_in(client, "mallory").access

    def call(self, method, path, token=None, **kwargs):
        headers = bearer(token) if token is not None else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def targets(self):
        """What a forged token would be used for: read, write, destroy, admin, log out."""
        return [
            ("GET", "/users/me", {}),
            ("GET", "/users", {}),
            ("POST", "/pets", {"json": {"name": "planted"}}),
            ("PATCH", f"/pets/{self.victim_pet}", {"json": {"name": "stolen"}}),
            ("DELETE", f"/pets/{self.victim_pet}", {}),
            ("GET", "/users/me/sessions", {}),
            ("PUT", "/users/me/password", {"json": {"current_password": PASSWORD, "new_password": "attacker's"}}),
            ("DELETE", "/users/me/sessions", {}),
            ("POST", "/auth/logout", {}),
        ]


# Processes released together


def _released(barrier, function, args, results):
    barrier.wait(timeout=30)
    try:
        results.put(function(*args))
    except BaseException as error:  # reported to the test, which shows it
        results.put(f"{type(error).__name__}: {error}")


def at_once(count, function, *args):
    """What ``function(*args)`` returns (or raises, as "Name: message") in each of
    ``count`` forked processes released together at a barrier."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_released, args=(barrier, function, args, results)) for _ in range(count)]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in range(count)]
    finally:
        for process in processes:
            process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0] * count
    return outcomes


# npm packages the end-to-end tests run (socket.io-client), from their lock files.
NPM_TIMEOUT = 300


def npm_ci(directory):
    """``npm ci`` in ``directory`` when its node_modules is missing: exactly the locked versions."""
    if (directory / "node_modules").is_dir():
        return
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=directory, capture_output=True, text=True, timeout=NPM_TIMEOUT
    )
    if installed.returncode != 0:
        pytest.fail(f"npm ci in {directory} failed:\n{installed.stderr}")
