import re
import sqlite3
import pytest

from jwt_server import create_app, db
from tests.postgres_server import PostgresServer

# The start_gunicorn fixture of the *_e2e.py files lives with the launcher.
pytest_plugins = ["tests.servers"]
ENGINES = ("sqlite", "postgresql")

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


def pytest_addoption(parser):
    parser.addoption(
        "--engine",
        action="append",
        choices=ENGINES,
        help="run the tests that use the database on this engine only (repeatable; default: both)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: runs on SQLite alone: it inspects SQLite itself, or is about HTTP, not the database")
    config.addinivalue_line("markers", "postgresql_only: the test is about PostgreSQL (races across hosts, outages)")


def pytest_generate_tests(metafunc):
    """Every test that uses the ``engine`` fixture (the app does) runs once per engine."""
    if "engine" in metafunc.fixturenames:
        engines = metafunc.config.getoption("engine") or ENGINES
        if metafunc.definition.get_closest_marker("sqlite_only"):
            engines = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgresql_only"):
            engines = ["postgresql"]
        metafunc.parametrize("engine", engines)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole run, and a migrated database the tests share."""
    server = PostgresServer().start()
    server.template = server.create_database()
    db.migrate(server.url(server.template))
    yield server
    server.destroy()


@pytest.fixture
def database_location(engine, tmp_path, request):
    """Where a test's database lives: a new SQLite file, or the emptied PostgreSQL database's URL."""
    if engine == "sqlite":
        yield str(tmp_path / "test.sqlite")
        return
    server = request.getfixturevalue("postgres_server")
    server.empty(server.template)
    yield server.url(server.template)


@pytest.fixture
def app(database_location):
    """An app on a fresh temporary database, of each engine in turn."""
    app = build_app(database_location)
    yield app
    db.close(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Row(tuple):
    """A row read by index or by column name, on either engine, like sqlite3.Row."""

    names = ()

    def __getitem__(self, key):
        return super().__getitem__(self.names.index(key) if isinstance(key, str) else key)

    def keys(self):
        return list(self.names)


def hybrid_rows(cursor):
    names = tuple(column.name for column in cursor.description or ())
    row_class = type("Row", (Row,), {"names": names})
    return lambda values: row_class(values)


def open_database(location):
    """A separate connection to the database at ``location``, to check what it holds."""
    if location.startswith("postgresql://"):
        from jwt_server.postgres import Connection

        return Connection.connect(location, autocommit=True, row_factory=hybrid_rows)
    connection = sqlite3.connect(location)
    connection.row_factory = sqlite3.Row
    return connection


def table_names(connection):
    """The tables of the database behind ``connection`` (either engine), schema bookkeeping aside."""
    if isinstance(connection, sqlite3.Connection):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename != 'schema_version'"
    return sorted(row[0] for row in connection.execute(sql))


@pytest.fixture
def database(app):
    """A separate connection to the app's database, to check what it holds."""
    connection = open_database(app.config["DATABASE"])
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
