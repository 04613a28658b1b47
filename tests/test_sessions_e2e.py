"""End to end, sessions under the real ``gunicorn -c gunicorn.conf.py wsgi:app``, several workers.

Racing refreshes of one refresh token, a revoked session refused by every
worker on the very next request, and cookie mode with every origin allowed
refused at start. The server, its start and stop, and the standard-library
HTTP client come from tests/servers.py; every wait is bounded.
"""
import re
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest

from tests.helpers import NEW_PASSWORD, PASSWORD
from tests.servers import START_TIMEOUT

pytestmark = pytest.mark.e2e

WORKERS = 4
RACERS = 10
MIN_RACE_ROUNDS = 5
MAX_RACE_ROUNDS = 30
FOLLOW_UPS = 20
MAX_BATCHES = 50
BARRIER_TIMEOUT = 10
_LOGGED = re.compile(r"request_id=(\S+) worker=<?(\d+)")


def all_at_once(count, request):
    """Run ``request()`` in ``count`` threads released together; the answers, in order."""
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT)

    def released():
        barrier.wait()
        return request()

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(released) for _ in range(count)]
        return [future.result(timeout=BARRIER_TIMEOUT + 60) for future in futures]


def codes(answers):
    return Counter((answer.status, (answer.body or {}).get("code")) for answer in answers)


def workers_of(server, answers):
    """The pid of the worker that answered each of ``answers``, found by X-Request-ID in the access log.

    Workers log just after answering, so the lines are waited for, bounded.
    """
    request_ids = {answer.headers["X-Request-ID"] for answer in answers}
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        found = dict(_LOGGED.findall(server.access_log()))
        if request_ids <= found.keys() or time.monotonic() > deadline:
            assert request_ids <= found.keys(), server.access_log()
            return [found[answer.headers["X-Request-ID"]] for answer in answers]
        time.sleep(0.05)


def until_every_worker_answered(server, request):
    """Fire batches of ``FOLLOW_UPS`` concurrent ``request()`` until each worker has answered one.

    Which worker accepts a connection is up to the kernel; a batch may all go
    to one. Every answer of every batch is returned.
    """
    answers, pids = [], set()
    for _ in range(MAX_BATCHES):
        batch = all_at_once(FOLLOW_UPS, request)
        answers += batch
        pids.update(workers_of(server, batch))
        if len(pids) == WORKERS:
            return answers
    pytest.fail(f"{len(answers)} requests reached only the workers {sorted(pids)}, not all {WORKERS}")


def session_revoked(server, session_id):
    with closing(sqlite3.connect(server.database)) as database:
        row = database.execute("SELECT revoked_at FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return row[0] is not None


def sid(server, access_token):
    """The session id of a live access token, from the server's own session list."""
    answer = server.call("GET", "/users/me/sessions", token=access_token)
    assert answer.status == 200, answer.body
    (current,) = [item for item in answer.body if item["current"]]
    return current["id"]


def race_once(server, refresh_token, access_token):
    """``RACERS`` refreshes of one token at once: exactly one wins, and the session dies."""
    session_id = sid(server, access_token)

    answers = all_at_once(RACERS, lambda: server.call("POST", "/auth/refresh", {"refresh_token": refresh_token}))

    assert codes(answers) == {(200, None): 1, (401, "refresh_token_reused"): RACERS - 1}, codes(answers)
    (winner,) = [answer for answer in answers if answer.status == 200]
    assert session_revoked(server, session_id)
    again = server.call("POST", "/auth/refresh", {"refresh_token": winner.body["refresh_token"]})
    assert (again.status, again.body["code"]) == (401, "invalid_refresh_token")
    for token in (winner.body["access_token"], access_token):
        answer = server.call("GET", "/users/me", token=token)
        assert (answer.status, answer.body["code"]) == (401, "invalid_token")
    return answers


def test_e2e_racing_refreshes_of_one_token_let_one_win_and_revoke_the_session(start_gunicorn):
    server = start_gunicorn(workers=WORKERS)
    server.register()
    spread_rounds = 0

    for round_number in range(1, MAX_RACE_ROUNDS + 1):
        tokens = server.log_in()
        answers = race_once(server, tokens.refresh, tokens.access)
        spread_rounds += len(set(workers_of(server, answers))) >= 2
        if round_number >= MIN_RACE_ROUNDS and spread_rounds:
            break

    assert spread_rounds, f"in {MAX_RACE_ROUNDS} rounds the racers never reached two workers at once"


def end_by_logout(server, access_token, other_access_token):
    return server.call("POST", "/auth/logout", token=access_token)


def end_by_deleting_it_from_another_session(server, access_token, other_access_token):
    return server.call("DELETE", f"/users/me/sessions/{sid(server, access_token)}", token=other_access_token)


def end_by_password_change_in_another_session(server, access_token, other_access_token):
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return server.call("PUT", "/users/me/password", body, token=other_access_token)


@pytest.mark.parametrize(
    "end_session",
    [end_by_logout, end_by_deleting_it_from_another_session, end_by_password_change_in_another_session],
    ids=["logout", "delete-by-id", "password-change"],
)
def test_e2e_ended_session_is_refused_at_once_by_every_worker(start_gunicorn, end_session):
    server = start_gunicorn(workers=WORKERS)
    server.register()
    tokens = server.log_in()
    access_token, refresh_token = tokens.access, tokens.refresh
    other_access_token = server.log_in().access

    def who_am_i():
        return server.call("GET", "/users/me", token=access_token)

    before = until_every_worker_answered(server, who_am_i)
    assert codes(before) == {(200, None): len(before)}

    ended = end_session(server, access_token, other_access_token)
    assert ended.status == 204, ended.body
    after = until_every_worker_answered(server, who_am_i)

    assert codes(after) == {(401, "invalid_token"): len(after)}
    assert len(after) >= FOLLOW_UPS
    again = server.call("POST", "/auth/refresh", {"refresh_token": refresh_token})
    assert (again.status, again.body["code"]) == (401, "invalid_refresh_token")
    assert server.call("GET", "/users/me", token=other_access_token).status == 200


def test_e2e_gunicorn_refuses_to_start_in_cookie_mode_with_every_origin_allowed(start_gunicorn):
    server = start_gunicorn(workers=2, wait=False, AUTH_COOKIE="true", CORS_ORIGINS="*")

    returncode = server.process.wait(timeout=START_TIMEOUT)

    assert returncode != 0
    assert "AUTH_COOKIE" in server.stderr()
    assert "Traceback" not in server.stderr()
    assert not server.database.exists()
