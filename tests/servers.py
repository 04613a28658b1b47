"""The real ``gunicorn -c gunicorn.conf.py wsgi:app`` for end-to-end tests.

``launch`` starts it on a free port of 127.0.0.1 with a database in a given
directory and waits, bounded, for ``GET /health``; conftest's ``start_gunicorn``
is the same as a fixture that stops every server it started. The HTTP client is
the standard library's, so what is tested is the server as any client sees it.
"""
import contextlib
import http.client
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

from tests.helpers import PASSWORD, PROJECT_ROOT, SECRET, Tokens, clean_environment

GUNICORN = Path(sys.executable).with_name("gunicorn")
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


# Raw requests, for what no HTTP client would send.
REQUEST_ID = "attack-1"


def exchange(sock, data):
    """Send ``data`` on a connected socket and read one HTTP response from it."""
    with sock:
        sock.settimeout(START_TIMEOUT)
        sock.sendall(data)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        content = answer.read()
    if "json" in answer.headers.get("Content-Type", ""):
        content = json.loads(content)
    return Response(answer.status, answer.headers, content)


def send(server, data):
    host, port = server.base_url.removeprefix("http://").split(":")
    return exchange(socket.create_connection((host, int(port))), data)


def head(method, path, *headers):
    lines = [f"{method} {path} HTTP/1.1", "Host: api.example.com", f"X-Request-ID: {REQUEST_ID}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    database: Path
    stderr_path: Path

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def access_log(self):
        """gunicorn's access log: its stdout, next to its stderr."""
        return self.stderr_path.with_suffix(".out").read_text(errors="replace")

    def call(self, method, path, body=None, token=None):
        return call(self.base_url, method, path, body, token)

    def register(self, username="travis", password=PASSWORD):
        answer = self.call("POST", "/users", {"username": username, "password": password})
        assert answer.status == 201, answer.body
        return answer.body

    def log_in(self, username="travis", password=PASSWORD):
        """POST /auth, which must succeed: the tokens of a new session."""
        answer = self.call("POST", "/auth", {"username": username, "password": password})
        assert answer.status == 200, answer.body
        return Tokens(answer.body)

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
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        signal_group(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


def signal_group(pgid, sig):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def launch(directory, workers=4, database=None, wait=True, name="gunicorn", **settings):
    """Start gunicorn on a database in ``directory``; ``settings`` add to its environment."""
    database = database or Path(directory) / "e2e.sqlite"
    port = free_port()
    stdout_path, stderr_path = Path(directory) / f"{name}.out", Path(directory) / f"{name}.err"
    environment = clean_environment(
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


def register_and_login(server, username, password=PASSWORD):
    """Register ``username`` and log in: ``(user id, access token)``."""
    return server.register(username, password)["id"], server.log_in(username, password).access
