"""End to end: the login throttle holds in the real gunicorn, across its workers.

50 wrong guesses for one username are fired at once from 50 threads at
gunicorn with 4 workers, at a bcrypt cost that makes each comparison take
measurable time: only LOGIN_MAX_FAILURES of them may reach bcrypt.
"""
import json
import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwt_server.throttle import username_key
from tests.helpers import PASSWORD
from tests.servers import call, register_and_login

pytestmark = pytest.mark.e2e

MAX_FAILURES = 5
GUESSES = 50
BURST_TIMEOUT = 60


def audit_events(stderr):
    """The audit lines among gunicorn's own log lines."""
    events = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def fire_at_once(server, bodies):
    """POST /auth with every body from its own thread, all released together."""
    start = threading.Barrier(len(bodies))

    def guess(body):
        start.wait(timeout=BURST_TIMEOUT)
        return call(server.base_url, "POST", "/auth", body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        futures = [pool.submit(guess, body) for body in bodies]
        return [future.result(timeout=BURST_TIMEOUT) for future in futures]


def test_e2e_a_burst_of_50_wrong_passwords_gets_only_max_failures_comparisons(start_gunicorn):
    server = start_gunicorn(
        workers=4, BCRYPT_ROUNDS="10", LOGIN_MAX_FAILURES=str(MAX_FAILURES), LOGIN_LOCKOUT="60"
    )
    user_id, _ = register_and_login(server, "travis")
    bodies = [{"username": "travis", "password": f"wrong guess {n}"} for n in range(GUESSES)]

    answers = fire_at_once(server, bodies)

    statuses = Counter(answer.status for answer in answers)
    assert statuses[401] <= MAX_FAILURES, statuses
    assert statuses == {401: MAX_FAILURES, 429: GUESSES - MAX_FAILURES}, statuses
    for answer in answers:
        if answer.status == 429:
            assert answer.body["code"] == "too_many_attempts"
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
    events = audit_events(server.stderr())
    failed = [event for event in events if event["event"] == "login_failed"]
    assert len(failed) <= MAX_FAILURES, failed
    assert {event["user_id"] for event in failed} == {user_id}
    assert sorted(event["request_id"] for event in failed) == sorted(
        answer.headers["X-Request-ID"] for answer in answers if answer.status == 401
    )
    throttled = [event for event in events if event["event"] == "login_throttled"]
    assert sorted(event["request_id"] for event in throttled) == sorted(
        answer.headers["X-Request-ID"] for answer in answers if answer.status == 429
    )
    with sqlite3.connect(server.database) as database:
        row = database.execute(
            "SELECT failures, lockouts FROM login_throttle WHERE username_key = ? AND ip = '127.0.0.1'",
            (username_key("travis"),),
        ).fetchone()
    assert row == (MAX_FAILURES, 1)


def test_e2e_a_lockout_counted_by_one_server_holds_in_another_on_the_same_database(start_gunicorn, tmp_path):
    database = tmp_path / "shared.sqlite"
    first = start_gunicorn(workers=1, database=database, LOGIN_MAX_FAILURES=str(MAX_FAILURES))
    second = start_gunicorn(workers=1, database=database, LOGIN_MAX_FAILURES=str(MAX_FAILURES))
    register_and_login(first, "travis")
    wrong = {"username": "travis", "password": "not the password"}
    assert [first.call("POST", "/auth", wrong).status for _ in range(MAX_FAILURES)] == [401] * MAX_FAILURES

    locked = second.call("POST", "/auth", {"username": "TRAVIS", "password": PASSWORD})

    assert locked.status == 429
    assert locked.body["code"] == "too_many_attempts"
    assert [event["event"] for event in audit_events(second.stderr())] == ["login_throttled"]
