"""Login throttling per (username, client IP), kept in the database.

An attempt is counted as a failure *before* its bcrypt comparison, inside
one BEGIN IMMEDIATE transaction with the check, and forgiven if it succeeds.
So a burst of parallel guesses across every worker gets at most
``LOGIN_MAX_FAILURES`` comparisons: the attempt that reaches the limit
locks the pair at once, while its own comparison is still running.
"""
import hashlib
import ipaddress
import time

from . import audit
from .db import transaction
from .exceptions import LockedOut

MAX_LOCKOUT_SECONDS = 900
FORGET_AFTER_SECONDS = 24 * 3600


def username_key(username):
    return hashlib.sha256(username.lower().encode("utf-8", "surrogatepass")).hexdigest()


def client_key(ip):
    """The client an address belongs to: an IPv6 address by its /64, a mapped IPv4 one as IPv4.

    One subscriber gets a whole /64 and can pick any address in it, and a
    dual-stack socket reports IPv4 clients as ``::ffff:a.b.c.d``.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network((address, 64), strict=False))
    return str(address)


def count_attempt(db, username, ip, max_failures, lockout, user_id=None):
    """Count a login attempt, or raise LockedOut if the pair is locked out.

    Returns True when this attempt, if it fails, starts a lockout. ``user_id``
    (None for an unknown username) is only for the audit line.
    """
    key, ip = username_key(username), client_key(ip)
    with transaction(db):
        now = int(time.time())  # once the lock is held: the lock may take a second to get
        row = db.execute(
            "SELECT failures, lockouts, locked_until FROM login_throttle WHERE username_key = ? AND ip = ?",
            (key, ip),
        ).fetchone()
        if row is not None and row["locked_until"] > now:
            retry_after = row["locked_until"] - now
        else:
            retry_after = None
            failures = (row["failures"] if row else 0) + 1
            lockouts = row["lockouts"] if row else 0
            locks = failures >= max_failures
            locked_until = now + min(lockout * 2**lockouts, MAX_LOCKOUT_SECONDS) if locks else 0
            db.execute(
                """
                INSERT INTO login_throttle (username_key, ip, failures, lockouts, locked_until, updated_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (username_key, ip) DO UPDATE SET failures = excluded.failures,
                    lockouts = excluded.lockouts, locked_until = excluded.locked_until,
                    updated_at = excluded.updated_at
                """,
                (key, ip, failures, lockouts + locks, locked_until, now),
            )
    if retry_after is not None:
        audit.event("login_throttled", user_id, retry_after=retry_after)
        raise LockedOut(retry_after)
    return locks


def forgive(db, username, ip):
    """A successful login resets the pair's count."""
    db.execute(
        "DELETE FROM login_throttle WHERE username_key = ? AND ip = ?",
        (username_key(username), client_key(ip)),
    )


def prune(db):
    """Forget pairs untouched for a day (run on login; the index finds them)."""
    db.execute(
        "DELETE FROM login_throttle WHERE updated_at < ?", (int(time.time()) - FORGET_AFTER_SECONDS,)
    )
