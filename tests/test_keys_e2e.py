"""End to end: asymmetric tokens from the real gunicorn, checked by real verifiers.

The two resource servers of examples/resource-servers, one in Python (PyJWT's
PyJWKClient) and one in Node (jose's createRemoteJWKSet and jwtVerify), know
only the JWKS URL. While clients keep logging in, refreshing and calling them,
the signing key is rotated twice with the command line; not one verification
may fail, anywhere. Every wait is bounded.
"""
import base64
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from jwt_server.keys import unseal
from tests.helpers import PASSWORD, SECRET, clean_environment
from tests.servers import (
    GUNICORN,
    PROJECT_ROOT,
    START_TIMEOUT,
    call,
    free_port,
    register_and_login,
)

EXAMPLES = PROJECT_ROOT / "examples" / "resource-servers"
FLASK = Path(sys.executable).with_name("flask")
OTHER_SECRET = "a-different-secret-that-is-32-bytes-long"
# Short enough for a test: a new key signs 2 s after it is published, tokens live 4 s.
TIMING = {"JWKS_MAX_AGE": "2", "ACCESS_TOKEN_TTL": "4"}


def keys_environment(server, **settings):
    """The environment ``server`` was started with, for the command line."""
    return clean_environment(
        DATABASE_URL=f"sqlite:///{server.database}", JWT_SECRET=SECRET, BCRYPT_ROUNDS="4", **settings
    )


def flask_command(server, *args, **settings):
    return subprocess.run(
        [str(FLASK), "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=keys_environment(server, **settings),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


def stored_keys(database):
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute("SELECT * FROM signing_keys ORDER BY activates_at").fetchall()
    finally:
        connection.close()


def node_modules():
    """The example's dependencies, installed as its README says (npm ci) when missing."""
    if not (EXAMPLES / "node_modules" / "jose").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed (Debian: apt-get install -y nodejs npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLES, check=True, timeout=300)


class ResourceServer:
    """One of the examples, started on a free port with only the JWKS URL of the server."""

    def __init__(self, name, command, directory, jwks_url, **settings):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"{name}.log"
        environ = clean_environment(JWKS_URL=jwks_url, PORT=str(self.port), NO_PROXY="127.0.0.1", **settings)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=EXAMPLES, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_until_listening()

    def wait_until_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited: {self.log_path.read_text()}")
            try:
                if call(self.url, "GET", "/").status == 401:
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"{self.name} did not listen within {START_TIMEOUT} s: {self.log_path.read_text()}")

    def verify(self, token):
        return call(self.url, "GET", "/", token=token)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def resource_servers(tmp_path):
    """``start(jwks_url, **settings)``: the Python and the Node example; stopped afterwards."""
    started = []

    def start(jwks_url, **settings):
        node_modules()
        python = ResourceServer(
            "python", [sys.executable, "resource_server.py"], tmp_path, jwks_url, **settings
        )
        started.append(python)
        node = ResourceServer("node", ["node", "resource-server.mjs"], tmp_path, jwks_url, **settings)
        started.append(node)
        return python, node

    yield start
    for server in started:
        server.stop()


class Client(threading.Thread):
    """A user who keeps calling: jwt-server and both resource servers with each token, refreshing as it ages."""

    def __init__(self, server, verifiers, username, stop):
        super().__init__(daemon=True)
        self.server, self.verifiers, self.username, self.stop = server, verifiers, username, stop
        self.outcomes = Counter()  # (verifier, status, kid)
        self.failures = []

    def run(self):
        tokens = self.log_in()
        while not self.stop.is_set():
            if tokens["expires_at"] - time.time() < 1.5:
                tokens = self.refreshed(tokens)
            self.check(tokens["access_token"])

    def log_in(self):
        answer = self.server.call("POST", "/auth", {"username": self.username, "password": PASSWORD})
        assert answer.status == 200, answer.body
        return {**answer.body, "expires_at": time.time() + answer.body["expires_in"]}

    def refreshed(self, tokens):
        answer = self.server.call("POST", "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
        if answer.status != 200:
            self.failures.append(("refresh", answer.status, answer.body))
            return self.log_in()
        return {**answer.body, "expires_at": time.time() + answer.body["expires_in"]}

    def check(self, token):
        kid = header_kid(token)
        answers = {"jwt-server": self.server.call("GET", "/users/me", token=token)}
        answers.update((verifier.name, verifier.verify(token)) for verifier in self.verifiers)
        for name, answer in answers.items():
            self.outcomes[name, answer.status, kid] += 1
            if answer.status != 200:
                self.failures.append((name, answer.status, kid, answer.body))


def header_kid(token):
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def jwks_kids(server):
    return {key["kid"] for key in server.call("GET", "/.well-known/jwks.json").body["keys"]}


def test_e2e_python_and_node_verify_every_token_through_two_rotations_under_load(start_gunicorn, resource_servers):
    server = start_gunicorn(workers=2, JWT_ALGORITHM="EdDSA", **TIMING)
    first_kid = jwks_kids(server).pop()
    verifiers = resource_servers(f"{server.base_url}/.well-known/jwks.json", JWKS_MAX_AGE=TIMING["JWKS_MAX_AGE"])
    for number in range(4):
        register_and_login(server, f"client{number}")
    stop = threading.Event()
    clients = [Client(server, verifiers, f"client{number}", stop) for number in range(4)]
    for client in clients:
        client.start()

    time.sleep(2)
    rotations = [flask_command(server, "rotate-signing-key", JWT_ALGORITHM="EdDSA", **TIMING)]
    # The first key stops signing JWKS_MAX_AGE (2 s, rounded up to a whole
    # second) after the first rotation and is withdrawn ACCESS_TOKEN_TTL (4 s)
    # later: the second rotation, which deletes withdrawn keys, comes after
    # that (4 s was too little when the commands started quickly).
    time.sleep(8)
    rotations.append(flask_command(server, "rotate-signing-key", JWT_ALGORITHM="EdDSA", **TIMING))
    # The second rotation's old key is withdrawn 2 + 4 s after it; a little more.
    time.sleep(8)
    stop.set()
    for client in clients:
        client.join(timeout=30)

    assert [rotation.returncode for rotation in rotations] == [0, 0], [rotation.stderr for rotation in rotations]
    failures = [failure for client in clients for failure in client.failures]
    assert failures == []
    outcomes = sum((client.outcomes for client in clients), Counter())
    kids = {kid for _, _, kid in outcomes}
    assert len(kids) == 3 and first_kid in kids
    for verifier in ("jwt-server", "python", "node"):
        # Each of the three keys signed tokens, and each verifier accepted tokens of each.
        assert all(outcomes[verifier, 200, kid] > 0 for kid in kids), outcomes
    # The first two keys have left the JWKS; the first, withdrawn before the
    # second rotation, is gone from the database too.
    newest = [row["kid"] for row in stored_keys(server.database) if row["retires_at"] is None]
    assert jwks_kids(server) == set(newest)
    assert first_kid not in {row["kid"] for row in stored_keys(server.database)}


def test_e2e_automatic_rotation_happens_once_across_workers(start_gunicorn):
    server = start_gunicorn(workers=4, JWT_ALGORITHM="ES256", SIGNING_KEY_ROTATION_DAYS="1", **TIMING)
    _, token = register_and_login(server, "travis")
    connection = sqlite3.connect(server.database)
    with connection:
        connection.execute("UPDATE signing_keys SET activates_at = activates_at - 2 * 86400")
    connection.close()

    # Each worker reloads its keys at least every second (half of JWKS_MAX_AGE) when asked for one.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert server.call("GET", "/users/me", token=token).status == 200

    rows = stored_keys(server.database)
    assert len(rows) == 2, [dict(row) for row in rows]
    old, new = rows
    assert old["retires_at"] == new["activates_at"]
    assert new["retires_at"] is None
    listed = flask_command(server, "list-signing-keys", JWT_ALGORITHM="ES256", **TIMING)
    assert listed.returncode == 0, listed.stderr
    states = {line.split()[0]: line.split()[2] for line in listed.stdout.splitlines()[1:]}
    assert (states[old["kid"]], states[new["kid"]]) in {("active", "next"), ("retiring", "active")}, listed.stdout


def test_e2e_a_secret_that_cannot_open_the_keys_stops_gunicorn_with_one_line(start_gunicorn):
    server = start_gunicorn(workers=2, JWT_ALGORITHM="EdDSA")
    server.stop()
    before = [dict(row) for row in stored_keys(server.database)]

    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=PROJECT_ROOT,
        env={**keys_environment(server, JWT_ALGORITHM="EdDSA"), "JWT_SECRET": OTHER_SECRET,
             "WEB_CONCURRENCY": "2", "BIND": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )

    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "JWT_SECRET cannot open the signing key" in lines[0]
    assert before[0]["kid"] in lines[0]
    assert [dict(row) for row in stored_keys(server.database)] == before


def test_e2e_no_private_key_material_in_the_logs_the_jwks_the_metadata_or_the_commands(start_gunicorn):
    server = start_gunicorn(workers=2, JWT_ALGORITHM="RS256")
    register_and_login(server, "travis")
    bad = server.call("GET", "/users/me", token="not.a.token")
    outputs = [
        flask_command(server, "rotate-signing-key", JWT_ALGORITHM="RS256"),
        flask_command(server, "list-signing-keys", JWT_ALGORITHM="RS256"),
    ]
    texts = [
        str(server.call("GET", "/.well-known/jwks.json").body),
        str(server.call("GET", "/.well-known/oauth-authorization-server").body),
        str(bad.body),
        *(output.stdout + output.stderr for output in outputs),
    ]
    server.stop()
    texts += [server.stderr(), server.stderr_path.with_suffix(".out").read_text(errors="replace")]

    for row in stored_keys(server.database):
        private_key, _ = unseal(row["private_key"], row["kid"], [SECRET])
        for secret_text in private_fragments(private_key) + [row["private_key"][:40]]:
            assert not any(secret_text in text for text in texts), "private key material leaked"
    assert not any(SECRET in text for text in texts)


def private_fragments(private_key):
    """Strings that would betray the private key however it was printed: PEM, base64url, decimal."""
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    prime = private_key.private_numbers().p
    prime_bytes = prime.to_bytes((prime.bit_length() + 7) // 8, "big")
    return [
        base64.b64encode(der).decode()[-64:-8],
        base64.urlsafe_b64encode(prime_bytes).rstrip(b"=").decode()[:32],
        str(prime)[:40],
        prime_bytes.hex()[:40],
    ]
