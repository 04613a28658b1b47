"""SQLite: a connection per request on ``g``, transactions, migrations.

Opening a connection costs about as much as the rest of a small request, so
each worker thread keeps its own open connection and lends it to one request
at a time: ``get_db()`` puts it on ``g``, and the teardown hands it back,
rolled back if a request left a transaction open, or closed after an error.

Connections run in autocommit mode (``isolation_level=None``): a single
statement commits by itself, and a write that spans statements is wrapped in
``transaction()``, which starts with BEGIN IMMEDIATE. Python's default
deferred transactions take the write lock only at the first write, and a
reader upgrading to a writer while another process writes fails at once with
"database is locked", whatever the busy timeout; BEGIN IMMEDIATE waits for
the lock instead.
"""
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from flask import current_app, g

MIGRATIONS_PATH = Path(__file__).resolve().parent.parent / "migrations.sql"
BUSY_TIMEOUT_SECONDS = 10
# SQLite's largest integer key: an id past it names no row (and would not bind).
MAX_ID = 2**63 - 1
_STEP_HEADER = re.compile(r"^-- step (\d+):.*$", re.MULTILINE)


# SQLite's primary result codes that a retry can cure: busy and locked
# (past the busy timeout), read-only, I/O error, full, cannot open.
TRANSIENT_SQLITE_CODES = {5, 6, 8, 10, 13, 14}
_TRANSIENT_MESSAGES = ("locked", "busy", "readonly", "read-only", "disk i/o", "full", "unable to open")


class MigrationError(RuntimeError):
    pass


def is_transient(error):
    """True for a database error that a retry can fix; False for a bug (bad SQL, a missing column)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in TRANSIENT_SQLITE_CODES
    # Python < 3.11 gives no result code: judge by SQLite's message.
    message = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and any(word in message for word in _TRANSIENT_MESSAGES)


def connect(path):
    """A connection to an existing database file, set up for concurrent use."""
    connection = sqlite3.connect(
        f"file:{quote(path)}?mode=rw",
        uri=True,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    # WAL's default, NORMAL, survives a killed process but may lose the last
    # commits on power loss; an acknowledged write must survive both.
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def get_db():
    if "db" not in g:
        idle = current_app.extensions["jwt_server.connections"]
        path = current_app.config["DATABASE"]
        connection = getattr(idle, "connection", None)
        if connection is None or idle.path != path:
            connection = connect(path)
        idle.connection = None
        g.db, g.db_path = connection, path
    return g.db


def release_db(exception=None):
    """Give the request's connection back to its thread, or close it after an error."""
    connection = g.pop("db", None)
    if connection is None:
        return
    if exception is not None or connection.in_transaction:
        connection.close()
        return
    idle = current_app.extensions["jwt_server.connections"]
    idle.connection, idle.path = connection, g.pop("db_path")


@contextmanager
def transaction(connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises.

    Inside a transaction already, the block simply joins it: the outer one
    commits or rolls back everything.
    """
    if connection.in_transaction:
        yield connection
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def migration_steps(text):
    """``[(number, [statement, ...]), ...]`` from the text of migrations.sql."""
    headers = list(_STEP_HEADER.finditer(text))
    steps = []
    for header, following in zip(headers, headers[1:] + [None]):
        body = text[header.end() : following.start() if following else len(text)]
        steps.append((int(header.group(1)), split_statements(body)))
    numbers = [number for number, _ in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(f"migrations.sql steps must be numbered 1, 2, 3...; found {numbers}")
    return steps


def split_statements(sql):
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        line.strip().startswith("--") or not line.strip() for line in pending.splitlines()
    ):
        raise MigrationError(f"migrations.sql ends with an unfinished statement: {pending.strip()[:60]}")
    return statements


def migrate(path, migrations_path=MIGRATIONS_PATH):
    """Bring the database at ``path`` (created if absent) up to the last step.

    Safe when several workers start at once on the same file: the version is
    read again after BEGIN IMMEDIATE, so the first worker applies the steps
    and the others, waiting on the lock, find nothing left to do.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    steps = migration_steps(Path(migrations_path).read_text())
    latest = steps[-1][0]
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS * 3, isolation_level=None)
    try:
        enable_wal(connection)
        connection.execute("PRAGMA foreign_keys = OFF")
        if schema_version(connection) == latest:
            return
        with transaction(connection):
            current = schema_version(connection)
            if current > latest:
                raise MigrationError(
                    f"{path} is at schema step {current}, newer than this code's {latest}"
                )
            for number, statements in steps[current:]:
                for statement in statements:
                    try:
                        connection.execute(statement)
                    except sqlite3.Error as error:
                        raise MigrationError(f"migration step {number} failed on {path}: {error}") from error
            if connection.execute("PRAGMA foreign_key_check").fetchone():
                raise MigrationError(f"migration to step {latest} left broken foreign keys in {path}")
            connection.execute(f"PRAGMA user_version = {int(latest)}")
    finally:
        connection.close()


def enable_wal(connection):
    """Switch to WAL, waiting for other writers as a busy timeout would.

    On a database not yet in WAL mode SQLite answers this pragma with
    "database is locked" at once, without calling the busy handler, when
    another connection is writing: workers starting together on a new file,
    or the old Koa server still running, would otherwise fail.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def schema_version(connection):
    return connection.execute("PRAGMA user_version").fetchone()[0]


def init_app(app):
    migrate(app.config["DATABASE"])
    app.extensions["jwt_server.connections"] = threading.local()
    app.teardown_appcontext(release_db)
