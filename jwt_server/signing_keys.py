"""The signing_keys table: every SQL statement about signing keys. Functions here take the connection.

A key signs from ``activates_at`` until ``retires_at``; the newest key of an
algorithm has no ``retires_at`` yet, and a unique index keeps it to one. That
index is what makes adding the first key and rotating safe when every worker
of every host tries at once: the losers' statements change nothing.
"""
from .db import transaction

COLUMNS = "kid, algorithm, public_jwk, private_key, created_at, activates_at, retires_at"
NEW_KEY_COLUMNS = ("kid", "algorithm", "public_jwk", "private_key", "created_at", "activates_at")
_INSERT = f"INSERT INTO signing_keys ({', '.join(NEW_KEY_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"


def _values(key):
    return tuple(key[name] for name in NEW_KEY_COLUMNS)


def all_keys(connection):
    return connection.execute(f"SELECT {COLUMNS} FROM signing_keys ORDER BY activates_at, kid").fetchall()


def published(connection, algorithm, retired_before):
    """The keys of ``algorithm`` still published: not retired before ``retired_before``."""
    return connection.execute(
        f"""
        SELECT {COLUMNS} FROM signing_keys
        WHERE algorithm = ? AND (retires_at IS NULL OR retires_at > ?)
        ORDER BY activates_at, kid
        """,
        (algorithm, retired_before),
    ).fetchall()


def add_first(connection, key):
    """Insert ``key`` (a dict of the columns) unless its algorithm has a newest key already."""
    return connection.execute(_INSERT + " ON CONFLICT DO NOTHING", _values(key)).rowcount == 1


def rotate(connection, key, activated_before, withdrawn_before):
    """Make ``key`` the newest key of its algorithm, signing from its ``activates_at``.

    Only if the current newest key started signing before ``activated_before``:
    it then stops signing when ``key`` starts (never before it started itself).
    The update is conditional, so of several workers rotating at once exactly
    one finds the row to change; the others insert nothing. Keys withdrawn
    before ``withdrawn_before`` are deleted on the way. True if rotated.
    """
    with transaction(connection):
        retired = connection.execute(
            """
            UPDATE signing_keys
            SET retires_at = CASE WHEN activates_at > ? THEN activates_at ELSE ? END
            WHERE algorithm = ? AND retires_at IS NULL AND activates_at <= ?
            """,
            (key["activates_at"], key["activates_at"], key["algorithm"], activated_before),
        ).rowcount
        if retired != 1:
            return False
        connection.execute(
            "DELETE FROM signing_keys WHERE algorithm = ? AND retires_at <= ?",
            (key["algorithm"], withdrawn_before),
        )
        connection.execute(_INSERT, _values(key))
    return True


def reseal(connection, kid, old_private_key, new_private_key):
    """Replace the sealed private key of ``kid``, unless another worker already did."""
    connection.execute(
        "UPDATE signing_keys SET private_key = ? WHERE kid = ? AND private_key = ?",
        (new_private_key, kid, old_private_key),
    )
