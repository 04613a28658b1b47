"""The fixtures; what they are built from lives in helpers.py and servers.py."""
import pytest

from jwt_server import db
from jwt_server.config import ENVIRONMENT_VARIABLES
from tests.helpers import Scene, build_app, log_in, open_database, register
from tests.postgres_server import PostgresServer
from tests.servers import launch

ENGINES = ("sqlite", "postgresql")


def pytest_addoption(parser):
    parser.addoption(
        "--engine",
        action="append",
        choices=ENGINES,
        help="run the tests that use the database on this engine only (repeatable; default: both)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: runs on SQLite alone: it inspects SQLite itself, or is about HTTP, not the database"
    )
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
        return str(tmp_path / "test.sqlite")
    server = request.getfixturevalue("postgres_server")
    server.empty(server.template)
    return server.url(server.template)


@pytest.fixture(autouse=True)
def known_environment(monkeypatch):
    """No jwt-server setting of the developer's shell reaches an app a test builds."""
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_app(database_location):
    """Build apps on the test's database, of each engine in turn: ``make_app(AUTH_COOKIE=True, ...)``.

    Every app of one test shares that database (``DATABASE=...`` names another),
    so ``database`` sees what any of them wrote.
    """
    apps = []

    def make(**settings):
        apps.append(build_app(database_location, **settings))
        return apps[-1]

    yield make
    for app in apps:
        db.close(app)


@pytest.fixture
def app(make_app):
    """An app with the test settings on a fresh temporary database."""
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def database(app):
    """A separate connection to the app's database, to check what it holds."""
    connection = open_database(app.config["DATABASE"])
    yield connection
    connection.close()


@pytest.fixture
def travis(client):
    """A registered user, logged in: the tokens of the login."""
    register(client)
    return log_in(client)


@pytest.fixture
def auth_headers(travis):
    """A registered user, logged in: the Authorization header."""
    return travis.headers


@pytest.fixture
def scene(client):
    """A victim and an attacker, each with a real session (helpers.Scene)."""
    return Scene(client)


@pytest.fixture
def start_gunicorn(tmp_path):
    """Start gunicorn with several workers on a database in tmp_path; stop it afterwards."""
    servers = []

    def start(workers=4, database=None, wait=True, **settings):
        server = launch(tmp_path, workers, database, wait, name=f"gunicorn{len(servers)}", **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
