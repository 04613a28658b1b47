"""User rows: find, create, change a password, delete.

Functions here take the connection, like sessions.py, and raise the domain
errors of exceptions.py; the routes that use them live in the blueprints,
and the command line uses them too.
"""
from . import security, sessions
from .db import IntegrityError, transaction
from .exceptions import UsernameTaken
from .validation import is_text

USER_COLUMNS = "id, username, is_admin, created_at"


def find_by_username(db, username):
    """The user row with its hash, by username in any case; None if unknown."""
    if not is_text(username):
        return None
    return db.execute(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()


def find_by_id(db, user_id):
    return db.execute(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = ?", (user_id,)).fetchone()


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


def set_password(db, user_id, password, rounds, keep_session=None):
    """Hash and store a new password and end every session but ``keep_session``.

    The hash is computed before the transaction (bcrypt takes a quarter of
    a second, which no one should wait for behind the write lock); the new
    hash and the revocations commit together. Returns how many sessions ended.
    """
    password_hash = security.hash_password(password, rounds)
    with transaction(db):
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
        return sessions.revoke(db, user_id=user_id, keep=keep_session)


def rehash(db, user, password, rounds):
    """Store ``password`` at the configured cost, if the stored hash is still the one just checked.

    A compare-and-swap: a password change that committed while this login
    was in bcrypt must not be overwritten by a hash of the old password.
    """
    db.execute(
        "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
        (security.hash_password(password, rounds), user["id"], user["password_hash"]),
    )


def delete(db, user_id):
    """Delete a user; pets, sessions and rotated tokens go too (ON DELETE CASCADE)."""
    return db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount
