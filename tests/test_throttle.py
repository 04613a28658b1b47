"""Login throttling per (username, client IP): POST /auth answering 429 too_many_attempts.

Lockouts are mostly ended by moving ``locked_until`` into the past in the
database rather than by waiting them out; one test waits out a real 2 s window.
"""
import re
import sqlite3
import time
from pathlib import Path

import pytest

from jwt_server.throttle import username_key
from tests.helpers import PASSWORD, register

# The defaults of LOGIN_MAX_FAILURES and LOGIN_LOCKOUT (conftest clears the environment).
MAX_FAILURES = 5
LOCKOUT = 60
WRONG = "not the password at all"
ORIGIN = "https://app.example.com"


@pytest.fixture
def client(app):
    """The app's client, with travis registered."""
    client = app.test_client()
    register(client)
    return client


def attempt(client, username="travis", password=WRONG, ip=None, headers=None):
    environ = {"REMOTE_ADDR": ip} if ip else None
    return client.post(
        "/auth",
        json={"username": username, "password": password},
        environ_overrides=environ,
        headers=headers,
    )


def fail(client, times, username="travis", **kwargs):
    """``times`` wrong passwords, each of which must still reach the password check."""
    for number in range(1, times + 1):
        response = attempt(client, username, WRONG, **kwargs)
        assert response.status_code == 401, (number, response.get_json())


def retry_after(response):
    """The 429's Retry-After, which must be a whole number of seconds."""
    assert response.status_code == 429, response.get_data(as_text=True)
    value = response.headers["Retry-After"]
    assert re.fullmatch(r"[0-9]+", value), value
    return int(value)


def assert_locked(response, lockout):
    seconds = retry_after(response)
    # The lock may have been set in the previous second.
    assert lockout - 1 <= seconds <= lockout


def throttle_rows(database):
    return [dict(row) for row in database.execute("SELECT * FROM login_throttle ORDER BY ip")]


def throttle_row(database, username="travis", ip="127.0.0.1"):
    return database.execute(
        "SELECT * FROM login_throttle WHERE username_key = ? AND ip = ?", (username_key(username), ip)
    ).fetchone()


def end_lockout(database, username="travis", ip="127.0.0.1"):
    changed = database.execute(
        "UPDATE login_throttle SET locked_until = ? WHERE username_key = ? AND ip = ?",
        (int(time.time()) - 1, username_key(username), ip),
    ).rowcount
    database.commit()
    assert changed == 1


# The lockout itself


def test_failures_up_to_the_limit_are_checked_then_the_next_attempt_is_429(client):
    fail(client, MAX_FAILURES)

    response = attempt(client)

    assert_locked(response, LOCKOUT)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    assert body["code"] == "too_many_attempts"
    assert body["detail"]


def test_a_locked_pair_is_refused_even_with_the_right_password(client):
    fail(client, MAX_FAILURES)

    response = attempt(client, password=PASSWORD)

    assert_locked(response, LOCKOUT)
    assert response.get_json()["code"] == "too_many_attempts"
    assert "access_token" not in response.get_data(as_text=True)


def test_one_failure_less_than_the_limit_still_lets_the_right_password_in(client):
    fail(client, MAX_FAILURES - 1)

    assert attempt(client, password=PASSWORD).status_code == 200


def test_the_limit_follows_login_max_failures(make_app):
    client = make_app(LOGIN_MAX_FAILURES=2).test_client()
    register(client)
    fail(client, 2)

    assert_locked(attempt(client, password=PASSWORD), LOCKOUT)


def test_the_window_follows_login_lockout(make_app):
    client = make_app(LOGIN_LOCKOUT=300).test_client()
    register(client)
    fail(client, MAX_FAILURES)

    assert_locked(attempt(client), 300)


def test_a_request_missing_its_password_is_not_counted(client):
    for _ in range(MAX_FAILURES * 2):
        assert client.post("/auth", json={"username": "travis"}).status_code == 422

    assert attempt(client, password=PASSWORD).status_code == 200


# 429 attempts do not count


def test_attempts_answered_429_do_not_extend_the_window(client, database):
    fail(client, MAX_FAILURES)
    locked = dict(throttle_row(database))

    seconds = [retry_after(attempt(client, password=password)) for password in [WRONG, PASSWORD] * 5]

    assert seconds == sorted(seconds, reverse=True)
    assert seconds[0] <= LOCKOUT
    assert dict(throttle_row(database)) == locked


def test_attempts_answered_429_do_not_count_towards_the_next_lockout(client, database):
    fail(client, MAX_FAILURES)
    for _ in range(10):
        retry_after(attempt(client))
    end_lockout(database)

    fail(client, 1)

    # Twice the lockout (one lockout before), not 2**11 times.
    assert_locked(attempt(client), 2 * LOCKOUT)
    assert throttle_row(database)["lockouts"] == 2


# After a lockout


def test_the_lockout_ends_when_its_window_has_passed(make_app, database):
    client = make_app(LOGIN_LOCKOUT=2).test_client()
    register(client)
    fail(client, MAX_FAILURES)
    assert 1 <= retry_after(attempt(client, password=PASSWORD)) <= 2

    locked_until = throttle_row(database)["locked_until"]
    time.sleep(max(locked_until - time.time(), 0) + 0.05)

    assert attempt(client, password=PASSWORD).status_code == 200


def test_one_failure_after_a_lockout_locks_again_for_twice_as_long(client, database):
    fail(client, MAX_FAILURES)
    end_lockout(database)

    fail(client, 1)

    assert_locked(attempt(client, password=PASSWORD), 2 * LOCKOUT)


def test_each_further_lockout_doubles_the_window(client, database):
    fail(client, MAX_FAILURES)
    windows = [retry_after(attempt(client))]
    for _ in range(3):
        end_lockout(database)
        fail(client, 1)
        windows.append(retry_after(attempt(client)))

    for window, expected in zip(windows, [LOCKOUT, 2 * LOCKOUT, 4 * LOCKOUT, 8 * LOCKOUT]):
        assert expected - 1 <= window <= expected, windows


def test_the_lockout_window_is_capped_at_900_seconds(client, database):
    fail(client, MAX_FAILURES)
    database.execute("UPDATE login_throttle SET lockouts = 40, locked_until = ?", (int(time.time()) - 1,))
    database.commit()

    fail(client, 1)

    assert_locked(attempt(client), 900)
    assert throttle_row(database)["locked_until"] <= int(time.time()) + 900


def test_a_right_password_after_the_lockout_ends_logs_in(client, database):
    fail(client, MAX_FAILURES)
    end_lockout(database)

    assert attempt(client, password=PASSWORD).status_code == 200


# A success resets


def test_a_success_resets_the_count(client, database):
    fail(client, MAX_FAILURES - 1)
    assert attempt(client, password=PASSWORD).status_code == 200
    assert throttle_row(database) is None

    fail(client, MAX_FAILURES - 1)

    assert attempt(client, password=PASSWORD).status_code == 200


def test_a_success_after_a_lockout_resets_the_doubling(client, database):
    fail(client, MAX_FAILURES)
    end_lockout(database)
    assert attempt(client, password=PASSWORD).status_code == 200

    fail(client, MAX_FAILURES)

    assert_locked(attempt(client), LOCKOUT)


# Who is counted


def test_unknown_usernames_are_throttled_exactly_like_known_ones(client):
    known = [attempt(client, "travis") for _ in range(MAX_FAILURES + 1)]
    unknown = [attempt(client, "nobody") for _ in range(MAX_FAILURES + 1)]

    assert [r.status_code for r in unknown] == [r.status_code for r in known] == [401] * MAX_FAILURES + [429]
    assert unknown[-1].get_data() == known[-1].get_data()
    assert_locked(unknown[-1], LOCKOUT)
    assert_locked(known[-1], LOCKOUT)
    assert unknown[-2].get_data() == known[-2].get_data()


def test_usernames_are_counted_without_regard_to_case(client, database):
    for username in ["Travis", "TRAVIS", "travis", "tRaViS", "TrAvIs"]:
        assert attempt(client, username).status_code == 401

    assert_locked(attempt(client, "travis", PASSWORD), LOCKOUT)
    assert_locked(attempt(client, "TRAVIS", PASSWORD), LOCKOUT)
    assert len(throttle_rows(database)) == 1


def test_another_username_from_the_same_ip_is_not_affected(client):
    register(client, "alice")
    fail(client, MAX_FAILURES)

    assert attempt(client, "alice", PASSWORD).status_code == 200
    fail(client, MAX_FAILURES - 1, username="alice")


def test_the_same_username_from_another_ip_is_not_affected(client, database):
    fail(client, MAX_FAILURES)

    assert attempt(client, password=PASSWORD, ip="10.0.0.2").status_code == 200
    assert_locked(attempt(client, password=PASSWORD), LOCKOUT)
    assert throttle_row(database, ip="127.0.0.1")["failures"] == MAX_FAILURES


def test_each_ip_has_its_own_count(client, database):
    fail(client, MAX_FAILURES - 1, ip="10.0.0.2")
    fail(client, MAX_FAILURES - 1, ip="10.0.0.3")

    assert [row["failures"] for row in throttle_rows(database)] == [MAX_FAILURES - 1] * 2
    assert attempt(client, password=PASSWORD, ip="10.0.0.2").status_code == 200


# Client IP through proxies


def test_with_a_trusted_proxy_the_forwarded_client_address_is_throttled(make_app, database):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    register(client)
    fail(client, MAX_FAILURES, headers={"X-Forwarded-For": "203.0.113.5"})

    assert_locked(attempt(client, password=PASSWORD, headers={"X-Forwarded-For": "203.0.113.5"}), LOCKOUT)
    # Another client behind the same proxy (same socket peer) is not locked out.
    assert attempt(client, password=PASSWORD, headers={"X-Forwarded-For": "203.0.113.6"}).status_code == 200
    assert [row["ip"] for row in throttle_rows(database)] == ["203.0.113.5"]


def test_with_a_trusted_proxy_a_spoofed_leftmost_forwarded_entry_does_not_escape(make_app):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    register(client)
    for number in range(MAX_FAILURES):
        # The client invents the first entry; the proxy appends the real address.
        forwarded = {"X-Forwarded-For": f"198.51.100.{number}, 203.0.113.5"}
        assert attempt(client, headers=forwarded).status_code == 401

    locked = attempt(client, password=PASSWORD, headers={"X-Forwarded-For": "198.51.100.99, 203.0.113.5"})

    assert_locked(locked, LOCKOUT)


def test_without_trusted_proxies_a_spoofed_forwarded_for_does_not_escape(client, database):
    for number in range(MAX_FAILURES):
        assert attempt(client, headers={"X-Forwarded-For": f"198.51.100.{number}"}).status_code == 401

    locked = attempt(client, password=PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})

    assert_locked(locked, LOCKOUT)
    assert [row["ip"] for row in throttle_rows(database)] == ["127.0.0.1"]


# Bookkeeping


def test_rows_untouched_for_a_day_are_pruned_on_a_later_successful_login(client, database):
    fail(client, 1, username="stale")
    fail(client, 1, username="recent")
    now = int(time.time())
    for username, updated_at in [("stale", now - 24 * 3600 - 60), ("recent", now - 23 * 3600)]:
        database.execute(
            "UPDATE login_throttle SET updated_at = ? WHERE username_key = ?", (updated_at, username_key(username))
        )
    database.commit()

    assert attempt(client, password=PASSWORD).status_code == 200

    assert throttle_row(database, "stale") is None
    assert throttle_row(database, "recent") is not None


def test_a_failed_login_does_not_prune_another_pairs_count(client, database):
    fail(client, 1, username="recent")

    fail(client, 1)

    assert throttle_row(database, "recent")["failures"] == 1


def test_the_429_problem_document_carries_cors_headers(client):
    fail(client, MAX_FAILURES)

    response = attempt(client, headers={"Origin": ORIGIN})

    retry_after(response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "retry-after" in exposed


def test_the_429_carries_cors_headers_for_a_listed_origin(make_app):
    client = make_app(CORS_ORIGINS=[ORIGIN]).test_client()
    register(client)
    fail(client, MAX_FAILURES)

    response = attempt(client, headers={"Origin": ORIGIN})

    retry_after(response)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]


@pytest.mark.sqlite_only  # reads the database file's bytes
def test_the_throttle_table_never_stores_the_raw_username(client, app):
    username = "Mallory-Unique.Name_42"
    fail(client, MAX_FAILURES, username=username)
    retry_after(attempt(client, username))
    fail(client, 1, username=username.upper(), ip="10.0.0.9")

    database_path = Path(app.config["DATABASE"])
    files = sorted(database_path.parent.glob(database_path.name + "*"))  # with -wal and -shm
    stored = b"".join(file.read_bytes() for file in files)
    assert stored
    for form in {username, username.lower(), username.upper()}:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert form.encode(encoding) not in stored, (form, encoding)
    with sqlite3.connect(app.config["DATABASE"]) as connection:
        keys = {key for (key,) in connection.execute("SELECT username_key FROM login_throttle")}
    assert keys == {username_key(username)}
