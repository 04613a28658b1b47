"""User rows: find, create, change a password, delete.

Functions here take the connection, like sessions.py, and raise the domain
errors of exceptions.py; the routes that use them live in the blueprints,
and the command line uses them too.
"""
import time

from . import security, sessions
from .db import IntegrityError, serialize, transaction
from .exceptions import AccountGone, InvalidCredentials, LastAdministrator, UsernameTaken, UserNotFound
from .validation import is_text

USER_COLUMNS = "id, username, is_admin, disabled, created_at, last_login_at"
# What a password check reads: the hash, and the version a password change moves.
CREDENTIAL_COLUMNS = "password_hash, credentials_version"


def public(user):
    """The user as clients see it: never a hash."""
    return {
        "id": user["id"],
        "username": user["username"],
        "is_admin": bool(user["is_admin"]),
        "disabled": bool(user["disabled"]),
        "created_at": user["created_at"],
        "last_login_at": user["last_login_at"],
    }


def find_by_username(db, username):
    """The user row with its hash, by username in any case; None if unknown."""
    if not is_text(username):
        return None
    return db.execute(
        f"SELECT {USER_COLUMNS}, {CREDENTIAL_COLUMNS} FROM users WHERE username = ?", (username,)
    ).fetchone()


def find_by_id(db, user_id):
    return db.execute(f"SELECT {USER_COLUMNS}, {CREDENTIAL_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()


def list_all(db):
    return db.execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY id").fetchall()


def create(db, username, password, rounds, is_admin=False):
    """Insert a user (already validated); UsernameTaken if the name is taken in any case."""
    if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
        raise UsernameTaken(username)
    password_hash = security.hash_password(password, rounds)
    try:
        return db.execute(
            f"INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, ?) RETURNING {USER_COLUMNS}",
            (username, password_hash, int(is_admin)),
        ).fetchone()
    except IntegrityError:
        raise UsernameTaken(username) from None


def set_password(db, user_id, password, rounds, keep_session=None, verified=None):
    """Hash and store a new password and end every session but ``keep_session``.

    The hash is computed before the transaction (bcrypt takes a quarter of
    a second, which no one should wait for behind the write lock); the new
    hash, the next credentials version and the revocations commit together,
    so a login that verified the old password can no longer open a session
    (sessions.open_session). ``verified`` is the user row whose password the
    caller checked: if the password changed since, InvalidCredentials, and
    nothing is written. Returns how many sessions ended.
    """
    password_hash = security.hash_password(password, rounds)
    with transaction(db):
        changed = db.execute(
            """
            UPDATE users SET password_hash = :hash, credentials_version = credentials_version + 1
            WHERE id = :id AND (CAST(:version AS BIGINT) IS NULL OR credentials_version = :version)
            """,
            {"hash": password_hash, "id": user_id, "version": verified["credentials_version"] if verified else None},
        ).rowcount
        if not changed:
            raise InvalidCredentials() if find_by_id(db, user_id) else AccountGone()
        return sessions.revoke(db, user_id=user_id, keep=keep_session, reason="password_changed")


def rehash(db, user, password, rounds):
    """Store a new hash of ``password`` (NFKC, configured cost), if the stored hash is still the one just checked.

    A compare-and-swap: a password change that committed while this login
    was in bcrypt must not be overwritten by a hash of the old password.
    """
    db.execute(
        "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
        (security.hash_password(password, rounds), user["id"], user["password_hash"]),
    )


def record_login(db, user_id):
    db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (sessions.iso(time.time()), user_id))


def delete(db, user_id):
    """Delete a user; pets and sessions go too (ON DELETE CASCADE). AccountGone if already gone.

    Their live sockets hear ``account_deleted`` first, in the same transaction.
    """
    with transaction(db):
        sessions.revoke(db, user_id=user_id, reason="account_deleted")
        if not db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount:
            raise AccountGone()


def administer(db, user_id, *, is_admin=None, disabled=None, delete_user=False):
    """Promote, demote, disable, enable or delete a user, keeping an enabled administrator.

    Returns the user row before the change (None values leave a flag as it
    is). Disabling ends every session of the user. The check and the change
    are one transaction, so two administrators demoting each other at once
    cannot both succeed. Raises UserNotFound or LastAdministrator.
    """
    with transaction(db):
        serialize(db, "administer")
        user = find_by_id(db, user_id)
        if user is None:
            raise UserNotFound(user_id)
        stays_admin = not delete_user and (user["is_admin"] if is_admin is None else is_admin) and not (
            user["disabled"] if disabled is None else disabled
        )
        if user["is_admin"] and not user["disabled"] and not stays_admin and not other_enabled_admin(db, user_id):
            raise LastAdministrator(user_id)
        if delete_user:
            delete(db, user_id)
            return user
        db.execute(
            """
            UPDATE users SET is_admin = COALESCE(?, is_admin), disabled = COALESCE(?, disabled) WHERE id = ?
            """,
            (None if is_admin is None else int(is_admin), None if disabled is None else int(disabled), user_id),
        )
        if disabled:
            sessions.revoke(db, user_id=user_id, reason="account_disabled")
    return user


def other_enabled_admin(db, user_id):
    return db.execute(
        "SELECT 1 FROM users WHERE is_admin = 1 AND disabled = 0 AND id != ? LIMIT 1", (user_id,)
    ).fetchone() is not None
