"""Sessions: one per login, renewed by rotating refresh tokens, revocable.

Functions here take the connection and return rows or raise the domain
errors of exceptions.py; the routes that use them live in auth.py and users.py.

A refresh token is ``<session id>.<generation>.<random>.<tag>``: 256 random
bits, of which the session stores only a SHA-256, and a tag (an HMAC under a
key derived from the signing secret) over the rest. Each rotation moves the
session to the next generation, so any older token of the session, however
many rotations ago, is recognised by a valid tag and a lower generation,
with nothing stored per rotation; a forged one has no valid tag and cannot
end someone else's session.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from . import audit, events
from .db import MAX_ID, transaction
from .exceptions import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused

REVOKED_KEPT_SECONDS = 24 * 3600
PRUNE_BATCH = 500
USER_AGENT_MAX = 256
TAG_BYTES = 16

_REFRESH_TOKEN = re.compile(r"([1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class RefreshToken:
    """A presented refresh token; ``session_id`` and ``generation`` are None for one from before step 9.

    ``genuine``: its tag is valid, so it was issued here. Only that makes an
    older token evidence of reuse; the current token is proven by its hash.
    """

    random: str
    session_id: int | None = None
    generation: int | None = None
    genuine: bool = False


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def tag(secret, session_id, generation, random):
    key = hmac.new(secret.encode("utf-8", "surrogateescape"), b"jwt-server refresh-token tags", "sha256").digest()
    mac = hmac.new(key, f"{session_id}.{generation}.{random}".encode(), "sha256").digest()
    return base64.urlsafe_b64encode(mac[:TAG_BYTES]).rstrip(b"=").decode()


def refresh_token(secret, session_id, generation, random):
    return f"{session_id}.{generation}.{random}.{tag(secret, session_id, generation, random)}"


def parse_refresh_token(accepted_secrets, token):
    """The parts of a refresh token; InvalidRefreshToken if it has not the form of one.

    ``accepted_secrets`` are the signing secrets still accepted (JWT_SECRET,
    then JWT_SECRET_PREVIOUS): a tag made under any of them is genuine. A
    token without dots is one issued before step 9: its whole text is its
    random part, and it has no generation.
    """
    if "." not in token:
        return RefreshToken(token)
    match = _REFRESH_TOKEN.fullmatch(token)
    if match is None or int(match.group(1)) > MAX_ID or int(match.group(2)) > MAX_ID:
        raise InvalidRefreshToken()
    session_id, generation, random, presented_tag = match.groups()
    genuine = any(
        hmac.compare_digest(presented_tag, tag(secret, session_id, generation, random)) for secret in accepted_secrets
    )
    return RefreshToken(random, int(session_id), int(generation), genuine)


def iso(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_session(db, user, ttl, user_agent, ip, *, secret, max_sessions):
    """A new session for ``user``: ``(session_id, refresh_token, expires_at)``.

    ``user`` is the row whose password the login verified. The session is
    opened only if its ``credentials_version`` is still the user's and the
    account is enabled, in the same transaction as the insert: a password
    change that committed while the login was in bcrypt, or the account's
    deletion or disabling, raises InvalidCredentials instead. Past ``max_sessions`` the least recently used
    sessions make room.
    """
    now = int(time.time())
    random = secrets.token_urlsafe(32)
    with transaction(db):
        ended = make_room(db, user["id"], max_sessions, now)
        row = db.execute(
            """
            INSERT INTO sessions (user_id, refresh_token_hash, created_at, last_used_at, expires_at, user_agent, ip)
            SELECT id, ?, ?, ?, ?, ?, ? FROM users WHERE id = ? AND credentials_version = ? AND disabled = 0
            RETURNING id, expires_at
            """,
            (token_hash(random), now, now, now + ttl, (user_agent or "")[:USER_AGENT_MAX], ip,
             user["id"], user["credentials_version"]),
        ).fetchone()
        if row is None:
            raise InvalidCredentials()
    for session_id in ended:
        audit.event("session_revoked", user["id"], session_id=session_id, reason="session_limit")
    return row["id"], refresh_token(secret, row["id"], 0, random), row["expires_at"]


def make_room(db, user_id, max_sessions, now):
    """Delete the user's session rows beyond ``max_sessions - 1``; the ids of the live ones ended.

    Rows of ended sessions go first (they are only kept so that a reused
    token is recognised for a day), then the least recently used live ones,
    whose sockets hear ``session_revoked``.
    """
    rows = db.execute(
        """
        SELECT id, (revoked_at IS NULL AND expires_at > ?) AS live FROM sessions
        WHERE user_id = ? ORDER BY live, last_used_at, id
        """,
        (now, user_id),
    ).fetchall()
    excess = rows[: max(len(rows) - max_sessions + 1, 0)]
    db.executemany("DELETE FROM sessions WHERE id = ?", [(row["id"],) for row in excess])
    ended = [row["id"] for row in excess if row["live"]]
    for session_id in ended:
        events.session_ended(db, user_id, session_id, "session_revoked")
    return ended


def rotate(db, presented, accepted_secrets):
    """Swap a live session's refresh token for the next generation's: ``(session, new_token)``.

    An older token of the session coming back is evidence that two parties
    hold it: the whole session is revoked (thief and victim both log in
    again) and RefreshTokenReused is raised. The swap runs under BEGIN
    IMMEDIATE, so of two refreshes racing with one token, one wins and the
    other finds an older generation. ``accepted_secrets``: see parse_refresh_token;
    the new token is tagged with the first.
    """
    token = parse_refresh_token(accepted_secrets, presented)
    now = int(time.time())
    random = secrets.token_urlsafe(32)
    reused = None
    with transaction(db):
        session = db.execute(
            """
            UPDATE sessions SET refresh_token_hash = :new, refresh_generation = refresh_generation + 1,
                last_used_at = :now
            WHERE refresh_token_hash = :presented AND (CAST(:session_id AS BIGINT) IS NULL OR id = :session_id)
              AND revoked_at IS NULL AND expires_at > :now
            RETURNING id, user_id, expires_at, refresh_generation
            """,
            {"new": token_hash(random), "now": now, "presented": token_hash(token.random),
             "session_id": token.session_id},
        ).fetchone()
        if session is None and token.genuine:
            reused = db.execute(
                "SELECT id, user_id FROM sessions WHERE id = ? AND refresh_generation > ?",
                (token.session_id, token.generation),
            ).fetchone()
            if reused is not None:
                revoke(db, session_id=reused["id"], reason="refresh_token_reused")
    if reused is not None:
        audit.event("refresh_token_reused", reused["user_id"], session_id=reused["id"])
        raise RefreshTokenReused()
    if session is None:
        raise InvalidRefreshToken()
    return session, refresh_token(accepted_secrets[0], session["id"], session["refresh_generation"], random)


def revoke(db, *, session_id=None, user_id=None, keep=None, reason="session_revoked"):
    """Revoke one session, or every live session of a user but ``keep``; returns how many.

    The row stays a day longer, so that its older tokens are still
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
              AND (CAST(:session_id AS BIGINT) IS NULL OR id = :session_id)
              AND (CAST(:user_id AS BIGINT) IS NULL OR user_id = :user_id)
              AND (CAST(:keep AS BIGINT) IS NULL OR id != :keep)
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
