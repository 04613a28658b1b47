"""The fixtures; what they are built from lives in helpers.py and servers.py."""
import sqlite3

import pytest

from jwt_server.config import ENVIRONMENT_VARIABLES
from tests.helpers import Scene, build_app, log_in, register
from tests.servers import launch


@pytest.fixture(autouse=True)
def known_environment(monkeypatch):
    """No jwt-server setting of the developer's shell reaches an app a test builds."""
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_app(tmp_path):
    """Build apps on the test's temporary database: ``make_app(AUTH_COOKIE=True, ...)``.

    Every app of one test shares that file (``DATABASE=...`` names another),
    so ``database`` sees what any of them wrote.
    """

    def make(**settings):
        return build_app(tmp_path / "test.sqlite", **settings)

    return make


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
    connection = sqlite3.connect(app.config["DATABASE"])
    connection.row_factory = sqlite3.Row
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
