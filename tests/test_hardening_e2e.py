"""End to end, the real gunicorn attacked where it answers before the app, or
where the database file goes away under it.

Malformed requests are written to raw sockets: no HTTP client sends them.
Every answer must still be a problem document with the headers the app gives
every response (CORS for the request's Origin, X-Request-ID, nosniff).
Every wait is bounded.
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import time

import pytest

from tests.helpers import PASSWORD, TITLES
from tests.servers import REQUEST_ID, START_TIMEOUT, head, register_and_login, send

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example.com"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def chunked(method, path, body, chunk_size=16 * 1024, origin=ORIGIN):
    """A well-formed chunked request with a JSON content type."""
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + chunk_size]), body[i : i + chunk_size])
        for i in range(0, len(body), chunk_size)
    )
    headers = ["Content-Type: application/json", "Transfer-Encoding: chunked", f"Origin: {origin}"]
    return head(method, path, *headers) + chunks + b"0\r\n\r\n"


def padded_user(username, size):
    """A valid POST /users body of exactly ``size`` bytes (padded with JSON whitespace)."""
    body = json.dumps({"username": username, "password": PASSWORD}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def usernames(database):
    connection = sqlite3.connect(database)
    try:
        return {row[0] for row in connection.execute("SELECT username FROM users")}
    finally:
        connection.close()


def assert_problem(answer, status, code, origin="*"):
    """The app's problem document with its headers; ``origin`` is the expected Allow-Origin, or None."""
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert set(answer.body) == PROBLEM_KEYS, answer.body
    assert answer.body["type"] == "about:blank"
    assert answer.body["title"] == TITLES[status]
    assert answer.body["status"] == status
    assert answer.body["code"] == code
    assert answer.body["detail"].endswith(".")
    assert answer.headers.get("Access-Control-Allow-Origin") == origin
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", answer.headers["X-Request-ID"])


# Chunked request bodies


def test_e2e_chunked_body_over_64_kib_is_413_and_changes_nothing(start_gunicorn):
    server = start_gunicorn(workers=1)
    answer = send(server, chunked("POST", "/users", padded_user("chunky", 64 * 1024 + 1)))
    assert_problem(answer, 413, "payload_too_large")
    assert answer.headers["X-Request-ID"] == REQUEST_ID
    # Word for word what a body with a Content-Length over the limit gets.
    body = padded_user("direct", 64 * 1024 + 1)
    headers = ("Content-Type: application/json", f"Content-Length: {len(body)}", f"Origin: {ORIGIN}")
    direct = send(server, head("POST", "/users", *headers) + body)
    assert direct.status == 413 and direct.body == answer.body
    assert usernames(server.database) == set()


def test_e2e_chunked_body_of_exactly_64_kib_is_accepted(start_gunicorn):
    server = start_gunicorn(workers=1)
    answer = send(server, chunked("POST", "/users", padded_user("chunky", 64 * 1024), chunk_size=1000))
    assert answer.status == 201, answer.body
    assert answer.body["username"] == "chunky"
    assert usernames(server.database) == {"chunky"}


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hexadecimal
        b"2\r\n{}XX0\r\n\r\n",  # a chunk not followed by CRLF
        b"2;\x01\r\n{}\r\n0\r\n\r\n",  # a control character in a chunk extension
    ],
    ids=["size", "terminator", "extension"],
)
def test_e2e_malformed_chunk_framing_is_400_for_the_requests_origin(start_gunicorn, framing):
    server = start_gunicorn(workers=1, CORS_ORIGINS=ORIGIN)
    headers = ("Content-Type: application/json", "Transfer-Encoding: chunked")
    answer = send(server, head("POST", "/users", *headers, f"Origin: {ORIGIN}") + framing)
    assert_problem(answer, 400, "malformed_chunked_body", origin=ORIGIN)
    assert answer.headers["Vary"] == "Origin"
    assert answer.headers["X-Request-ID"] == REQUEST_ID

    elsewhere = send(server, head("POST", "/users", *headers, "Origin: https://evil.example") + framing)
    assert_problem(elsewhere, 400, "malformed_chunked_body", origin=None)
    assert usernames(server.database) == set()
    assert "Traceback" not in server.stderr()


# gunicorn's own limits


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (head("GET", "/health?q=" + "a" * 4100, f"Origin: {ORIGIN}"), 414, "uri_too_long"),
        (head("GET", "/health", f"Origin: {ORIGIN}", *(f"X-Field-{n}: {n}" for n in range(101))),
         431, "request_header_fields_too_large"),
        (head("GET", "/health", f"Origin: {ORIGIN}", "X-Long: " + "a" * 8200), 431, "request_header_fields_too_large"),
        (head("GET", "/health", f"Origin: {ORIGIN}", "X-Control: a\x01b"), 400, "bad_request"),
        (b"GET /health HTTP/1.1 extra\r\nHost: api.example.com\r\n\r\n", 400, "bad_request"),
    ],
    ids=["request-line", "header-count", "header-line", "control-character", "request-line-syntax"],
)
def test_e2e_gunicorns_own_errors_are_problem_documents(start_gunicorn, request_bytes, status, code):
    server = start_gunicorn(workers=1)
    answer = send(server, request_bytes)
    # With CORS_ORIGINS=*, any page may read the error, whether or not gunicorn got to the Origin.
    assert_problem(answer, status, code)
    assert answer.headers["Connection"] == "close"
    assert server.call("GET", "/health").status == 200
    assert "Traceback" not in server.stderr()


def test_e2e_gunicorns_limits_stay_at_their_defaults(start_gunicorn):
    server = start_gunicorn(workers=1)
    longest_line = head("GET", "/health?q=" + "a" * (4094 - len("GET /health?q= HTTP/1.1")))
    assert send(server, longest_line).status == 200
    most_fields = head("GET", "/health", *(f"X-Field-{n}: {n}" for n in range(97)))
    assert send(server, most_fields).status == 200
    # 8190 bytes with the line's CRLF.
    longest_field = head("GET", "/health", "X-Long: " + "a" * (8190 - len("X-Long: \r\n")))
    assert send(server, longest_field).status == 200


# The database file under a running server


def single_thread_server(start_gunicorn, **settings):
    """One worker with one thread: every request borrows the one kept connection."""
    return start_gunicorn(workers=1, GUNICORN_CMD_ARGS="--threads 1", **settings)


def assert_unavailable(answer):
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "database_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1


def booted_workers(server):
    return re.findall(r"Booting worker with pid: (\d+)", server.stderr())


def test_e2e_database_is_created_owner_only_before_any_worker_starts(start_gunicorn, tmp_path):
    database = tmp_path / "new" / "e2e.sqlite"
    server = start_gunicorn(workers=2, database=database)
    register_and_login(server, "travis")
    for path in (database, database.with_name("e2e.sqlite-wal"), database.with_name("e2e.sqlite-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(database.parent.stat().st_mode) & 0o077 == 0


def test_e2e_deleted_database_is_503_and_no_worker_creates_a_new_one(start_gunicorn):
    server = single_thread_server(start_gunicorn)
    register_and_login(server, "travis")
    for suffix in ("", "-wal", "-shm"):
        with_suffix = server.database.with_name(server.database.name + suffix)
        if with_suffix.exists():
            with_suffix.unlink()

    assert_unavailable(server.call("POST", "/users", {"username": "lost", "password": PASSWORD}))
    assert_unavailable(server.call("GET", "/health"))

    (worker,) = booted_workers(server)
    os.kill(int(worker), signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT
    while len(booted_workers(server)) < 2:
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    assert_unavailable(server.call("POST", "/users", {"username": "lost", "password": PASSWORD}))
    assert not server.database.exists()


def test_e2e_replaced_database_is_503_then_the_new_file_is_used(start_gunicorn, tmp_path):
    server = single_thread_server(start_gunicorn)
    register_and_login(server, "travis")
    replacement = tmp_path / "replacement.sqlite"
    shutil.copyfile(server.database, replacement)
    os.replace(replacement, server.database)

    # The kept connection still reads the old file: it must not take this write.
    assert_unavailable(server.call("POST", "/users", {"username": "lost", "password": PASSWORD}))
    created = server.call("POST", "/users", {"username": "kept", "password": PASSWORD})
    assert created.status == 201, created.body
    assert usernames(server.database) == {"travis", "kept"}
