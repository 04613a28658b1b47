"""The real ``gunicorn -c gunicorn.conf.py wsgi:app`` for end-to-end tests.

``launch`` starts it on a free port of 127.0.0.1 with a database in a given
directory and waits, bounded, for ``GET /health``; ``start_gunicorn`` is the
same as a fixture that stops every server it started. The HTTP client is the
standard library's, so what is tested is the server as any client sees it.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from jwt_server.config import ENVIRONMENT_VARIABLES
from tests.conftest import PASSWORD, SECRET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
# Every variable the server reads: cleared, so that a test starts from a known state.
CONFIG_VARIABLES = ENVIRONMENT_VARIABLES
START_TIMEOUT = 30
STOP_TIMEOUT = 15
REQUEST_TIMEOUT = 30

# Requests to 127.0.0.1 go straight there, whatever *_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Response:
    status: int
    headers: object
    body: object


def call(base_url, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener.open(request, timeout=REQUEST_TIMEOUT) as answer:
            return Response(answer.status, answer.headers, json.loads(answer.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, json.loads(error.read() or b"null"))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(**settings):
    """This process's environment without any jwt-server setting, plus ``settings``."""
    environ = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    environ.update(settings)
    return environ


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    database: Path
    stderr_path: Path

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def call(self, method, path, body=None, token=None):
        return call(self.base_url, method, path, body, token)

    def wait_until_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                if self.call("GET", "/health").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"gunicorn did not answer GET /health within {START_TIMEOUT} s:\n{self.stderr()}")

    def stop(self, sig=signal.SIGTERM):
        """Signal the whole process group, then make sure nothing is left."""
        if self.process.poll() is None:
            signal_group(self.process.pid, sig)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        signal_group(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def launch(directory, workers=4, database=None, wait=True, name="gunicorn", **settings):
    """Start gunicorn on a database in ``directory``; ``settings`` add to its environment."""
    database = database or Path(directory) / "e2e.sqlite"
    port = free_port()
    stdout_path, stderr_path = Path(directory) / f"{name}.out", Path(directory) / f"{name}.err"
    environment = server_environment(
        DATABASE_URL=f"sqlite:///{database}",
        JWT_SECRET=SECRET,
        BCRYPT_ROUNDS="4",
        WEB_CONCURRENCY=str(workers),
        BIND=f"127.0.0.1:{port}",
    )
    environment.update(settings)
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", database, stderr_path)
    if wait:
        try:
            server.wait_until_healthy()
        except BaseException:
            server.stop()
            raise
    return server


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


def register_and_login(server, username, password=PASSWORD):
    """Register ``username`` and log in: ``(user id, access token)``."""
    registered = server.call("POST", "/users", {"username": username, "password": password})
    assert registered.status == 201, registered.body
    answer = server.call("POST", "/auth", {"username": username, "password": password})
    assert answer.status == 200, answer.body
    return registered.body["id"], answer.body["access_token"]
