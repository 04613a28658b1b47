"""Sessions: one per login, renewed by rotating refresh tokens, revocable.

Functions here take the connection and return rows or raise the domain
errors of exceptions.py; the routes that use them live in auth.py and users.py.
"""
import hashlib
import secrets
import time
from datetime import datetime, timezone

from . import audit, events
from .db import transaction
from .exceptions import InvalidRefreshToken, RefreshTokenReused

REVOKED_KEPT_SECONDS = 24 * 3600
PRUNE_BATCH = 500
USER_AGENT_MAX = 256


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def iso(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_session(db, user_id, ttl, user_agent, ip):
    """A new session for ``user_id``: ``(session_id, refresh_token, expires_at)``."""
    now = int(time.time())
    refresh_token = secrets.token_urlsafe(32)
    row = db.execute(
        """
        INSERT INTO sessions (user_id, refresh_token_hash, created_at, last_used_at, expires_at, user_agent, ip)
        VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id, expires_at
        """,
        (user_id, token_hash(refresh_token), now, now, now + ttl, (user_agent or "")[:USER_AGENT_MAX], ip),
    ).fetchone()
    return row["id"], refresh_token, row["expires_at"]


def rotate(db, refresh_token):
    """Swap a live session's refresh token for a new one: ``(session, new_token)``.

    A token that was already rotated is evidence that two parties hold it:
    the whole session is revoked (thief and victim both log in again) and
    RefreshTokenReused is raised. The swap runs under BEGIN
    IMMEDIATE, so of two refreshes racing with one token, one wins and the
    other finds it already rotated.
    """
    now = int(time.time())
    presented = token_hash(refresh_token)
    new_token = secrets.token_urlsafe(32)
    reused = None
    with transaction(db):
        session = db.execute(
            """
            UPDATE sessions SET refresh_token_hash = ?, last_used_at = ?
            WHERE refresh_token_hash = ? AND revoked_at IS NULL AND expires_at > ?
            RETURNING id, user_id, expires_at
            """,
            (token_hash(new_token), now, presented, now),
        ).fetchone()
        if session is not None:
            db.execute(
                "INSERT INTO rotated_refresh_tokens (token_hash, session_id) VALUES (?, ?)",
                (presented, session["id"]),
            )
        else:
            reused = db.execute(
                """
                SELECT session_id, user_id FROM rotated_refresh_tokens
                JOIN sessions ON sessions.id = session_id WHERE token_hash = ?
                """,
                (presented,),
            ).fetchone()
            if reused is not None:
                revoke(db, session_id=reused["session_id"], reason="refresh_token_reused")
    if reused is not None:
        audit.event("refresh_token_reused", reused["user_id"], session_id=reused["session_id"])
        raise RefreshTokenReused()
    if session is None:
        raise InvalidRefreshToken()
    return session, new_token


def revoke(db, *, session_id=None, user_id=None, keep=None, reason="session_revoked"):
    """Revoke one session, or every live session of a user but ``keep``; returns how many.

    The row stays a day longer, so that its rotated tokens are still
    recognised as reused, then pruning removes it. Each ended session's
    live sockets hear ``reason`` (events.session_ended), in the same
    transaction.
    """
    if session_id is None and user_id is None:
        raise ValueError("revoke needs a session_id or a user_id")
    now = int(time.time())
    with transaction(db):
        ended = db.execute(
            """
            UPDATE sessions SET revoked_at = :now,
                expires_at = CASE WHEN expires_at < :now + :kept THEN expires_at ELSE :now + :kept END
            WHERE revoked_at IS NULL AND expires_at > :now
              AND (:session_id IS NULL OR id = :session_id)
              AND (:user_id IS NULL OR user_id = :user_id)
              AND (:keep IS NULL OR id != :keep)
            RETURNING id, user_id
            """,
            {"now": now, "kept": REVOKED_KEPT_SECONDS, "session_id": session_id, "user_id": user_id, "keep": keep},
        ).fetchall()
        for session in ended:
            events.session_ended(db, session["user_id"], session["id"], reason)
    return len(ended)


def prune(db):
    """Delete a batch of expired sessions (revoked ones expire a day after)."""
    db.execute(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)",
        (int(time.time()), PRUNE_BATCH),
    )


def live_sessions(db, user_id):
    return db.execute(
        """
        SELECT id, created_at, last_used_at, user_agent, ip FROM sessions
        WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY id
        """,
        (user_id, int(time.time())),
    ).fetchall()
