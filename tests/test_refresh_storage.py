"""Refresh-token bookkeeping is constant per session, and reuse detection stays exact.

However often a session is refreshed, the database holds the same rows; yet
every older refresh token of the session, not only the last, is recognised
as reuse, and a forged one cannot end anybody's session.
"""
import hashlib
import secrets
import sqlite3
from contextlib import closing

import pytest

from jwt_server import db
from tests.helpers import PASSWORD, SECRET, assert_problem, log_in, refresh, register

ROTATIONS = 6


def rotation_chain(client, length=ROTATIONS):
    """The refresh tokens of one session, oldest first, after ``length`` rotations."""
    tokens = [log_in(client).refresh]
    for _ in range(length):
        response = refresh(client, tokens[-1])
        assert response.status_code == 200, response.get_data(as_text=True)
        tokens.append(response.get_json()["refresh_token"])
    return tokens


def row_counts(app):
    """Rows per table, every table of the database."""
    with closing(sqlite3.connect(app.config["DATABASE"])) as database:
        names = [row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: database.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


@pytest.mark.sqlite_only  # counts rows through sqlite_master
def test_refreshing_a_session_many_times_adds_no_rows(app):
    client = app.test_client()
    register(client)
    tokens = rotation_chain(client, 1)
    after_one = row_counts(app)

    for _ in range(30):
        tokens.append(refresh(client, tokens[-1]).get_json()["refresh_token"])

    assert row_counts(app) == after_one
    assert after_one["sessions"] == 1


@pytest.mark.parametrize("older", range(ROTATIONS))
def test_every_older_token_of_a_session_is_recognised_as_reused(app, older):
    client = app.test_client()
    register(client)
    tokens = rotation_chain(client)

    response = refresh(client, tokens[older])

    assert_problem(response, 401, "refresh_token_reused")
    assert_problem(refresh(client, tokens[-1]), 401, "invalid_refresh_token")


def test_two_refreshes_racing_with_one_token_leave_the_loser_as_reuse(app):
    client = app.test_client()
    register(client)
    token = log_in(client).refresh

    winner = refresh(client, token)
    loser = refresh(client, token)

    assert winner.status_code == 200
    assert_problem(loser, 401, "refresh_token_reused")
    assert_problem(refresh(client, winner.get_json()["refresh_token"]), 401, "invalid_refresh_token")


def forgeries(older_token):
    """Tokens made up from an older token of the session, or from its id alone (ids are sequential)."""
    session_id, generation, random, tag = older_token.split(".")
    return {
        "random tag": f"{session_id}.{generation}.{random}.{secrets.token_urlsafe(16)}",
        "random everything": f"{session_id}.0.{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(16)}",
        "moved to another session": f"{int(session_id) + 1}.{generation}.{random}.{tag}",
        "moved to another generation": f"{session_id}.{int(generation) + 1}.{random}.{tag}",
    }


@pytest.mark.parametrize("forgery", list(forgeries("1.0.r.t")))
def test_a_forged_older_token_is_invalid_and_ends_no_session(app, forgery):
    client = app.test_client()
    register(client)
    tokens = rotation_chain(client, 2)
    register(client, "alice")
    alices = client.post("/auth", json={"username": "alice", "password": PASSWORD}).get_json()["refresh_token"]

    response = refresh(client, forgeries(tokens[0])[forgery])

    assert_problem(response, 401, "invalid_refresh_token")
    assert refresh(client, tokens[-1]).status_code == 200
    assert refresh(client, alices).status_code == 200


@pytest.mark.sqlite_only  # counts rows through sqlite_master
def test_deleting_an_account_with_many_refreshed_sessions_leaves_no_row_behind(app):
    client = app.test_client()
    register(client)
    for _ in range(5):
        tokens = rotation_chain(client, 4)
    access = refresh(client, tokens[-1]).get_json()["access_token"]

    response = client.delete("/users/me", json={"password": PASSWORD}, headers={"Authorization": f"Bearer {access}"})

    assert response.status_code == 204
    counts = row_counts(app)
    assert (counts["users"], counts["sessions"]) == (0, 0)
    assert "rotated_refresh_tokens" not in counts


# Sessions opened before the change keep working


def migrate_to_step(path, step, tmp_path):
    """Bring a new database at ``path`` to schema step ``step`` only."""
    text = db.MIGRATIONS_PATH.read_text()
    cut = text.index(f"-- step {step + 1}:")
    partial = tmp_path / f"migrations-to-{step}.sql"
    partial.write_text(text[:cut])
    db.migrate(str(path), partial)


def test_a_session_from_before_the_change_refreshes_and_then_detects_reuse(make_app, tmp_path):
    path = tmp_path / "older.sqlite"
    migrate_to_step(path, 5, tmp_path)
    legacy_token, rotated_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with closing(sqlite3.connect(path)) as database:
        database.execute("INSERT INTO users (username, password_hash) VALUES ('travis', 'x')")
        database.execute(
            """
            INSERT INTO sessions (user_id, refresh_token_hash, created_at, last_used_at, expires_at)
            VALUES (1, ?, strftime('%s', 'now'), strftime('%s', 'now'), strftime('%s', 'now') + 3600)
            """,
            (hashlib.sha256(legacy_token.encode()).hexdigest(),),
        )
        database.execute(
            "INSERT INTO rotated_refresh_tokens (token_hash, session_id) VALUES (?, 1)",
            (hashlib.sha256(rotated_token.encode()).hexdigest(),),
        )
        database.commit()

    app = make_app(DATABASE=str(path))  # migrates to the last step
    client = app.test_client()

    renewed = refresh(client, legacy_token)

    assert renewed.status_code == 200, renewed.get_data(as_text=True)
    assert "rotated_refresh_tokens" not in row_counts(app)
    # Tokens rotated before the change are no longer known: refused, but not as reuse.
    assert_problem(refresh(client, rotated_token), 401, "invalid_refresh_token")
    assert_problem(refresh(client, legacy_token), 401, "invalid_refresh_token")
    newer = refresh(client, renewed.get_json()["refresh_token"])
    assert newer.status_code == 200
    assert_problem(refresh(client, renewed.get_json()["refresh_token"]), 401, "refresh_token_reused")


# A new JWT_SECRET


NEW_SECRET = "a-new-secret-that-is-also-at-least-32-bytes"


def test_after_a_secret_roll_over_older_tokens_are_still_recognised_as_reused(make_app, tmp_path):
    path = tmp_path / "roll-over.sqlite"
    client = make_app(DATABASE=str(path)).test_client()
    register(client)
    tokens = rotation_chain(client, 2)
    rolled_over = make_app(DATABASE=str(path), JWT_SECRET=NEW_SECRET, JWT_SECRET_PREVIOUS=SECRET).test_client()

    assert_problem(refresh(rolled_over, tokens[0]), 401, "refresh_token_reused")


def test_after_a_secret_change_the_current_token_still_refreshes(make_app, tmp_path):
    path = tmp_path / "changed.sqlite"
    client = make_app(DATABASE=str(path)).test_client()
    register(client)
    tokens = rotation_chain(client, 2)
    changed = make_app(DATABASE=str(path), JWT_SECRET=NEW_SECRET).test_client()

    assert_problem(refresh(changed, tokens[0]), 401, "invalid_refresh_token")
    assert refresh(changed, tokens[-1]).status_code == 200
