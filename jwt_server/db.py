"""The database: a connection per request on ``g``, transactions, migrations.

Two engines sit behind this one interface: SQLite, the embedded default, and
PostgreSQL when ``DATABASE_URL`` names one (postgres.py: the pool, the
placeholders, the advisory-locked migrations). Routes write one SQL text for
both, with ``?`` or ``:name`` placeholders, and read rows by column name.
A parameter that may be NULL is given a type where it is first used
(``CAST(:keep AS BIGINT) IS NULL``): PostgreSQL cannot guess one.

Opening a connection costs about as much as the rest of a small request, so
each worker keeps its idle connections open and lends each to one request at
a time: ``get_db()`` puts one on ``g``, and the teardown hands it back, or
closes it if the request left a transaction open or ended in an error.
A kept connection is lent only while its file is still the one at the path:
one that was deleted or replaced under it would take writes no one will ever
read.

Connections run in autocommit mode (``isolation_level=None``): a single
statement commits by itself, and a write that spans statements is wrapped in
``transaction()``, which starts with BEGIN IMMEDIATE. Python's default
deferred transactions take the write lock only at the first write, and a
reader upgrading to a writer while another process writes fails at once with
"database is locked", whatever the busy timeout; BEGIN IMMEDIATE waits for
the lock instead.
"""
import copy
import functools
import os
import pwd
import re
import sqlite3
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import click
import psycopg
from flask import current_app, g

from . import postgres
from .config import redact

MIGRATIONS_PATH = Path(__file__).resolve().parent.parent / "migrations.sql"
POSTGRES_MIGRATIONS_PATH = MIGRATIONS_PATH.with_name("migrations.postgresql.sql")
BUSY_TIMEOUT_SECONDS = 10
# "Already taken", "no such parent row": what a constraint refused, on either engine.
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)
# Anything either engine raises.
DatabaseError = (sqlite3.Error, psycopg.Error)
# Idle connections a worker keeps; more at once are opened and closed again.
MAX_IDLE_CONNECTIONS = 16
# SQLite's largest integer key: an id past it names no row (and would not bind).
MAX_ID = 2**63 - 1
_STEP_HEADER = re.compile(r"^-- step (\d+):.*$", re.MULTILINE)


# SQLite's primary result codes that a retry can cure: busy and locked
# (past the busy timeout), read-only, I/O error, full, cannot open.
TRANSIENT_SQLITE_CODES = {5, 6, 8, 10, 13, 14}
_TRANSIENT_MESSAGES = (
    "locked", "busy", "readonly", "read-only", "disk i/o", "full", "unable to open",
    "could not open",  # PyPy's sqlite3, for a file it cannot open
)
SQLITE_CANTOPEN = 14

# Databases this process created and migrated before forking: in gunicorn's
# master (gunicorn.conf.py). A worker forked from it only opens them, so a
# worker respawned after the file was deleted cannot create an empty one.
_prepared_before_fork = set()


class MigrationError(SystemExit):
    """The database cannot be opened or brought up to date; the line says why and what to do.

    A SystemExit, like config.ConfigError, so that wherever migrate runs
    (gunicorn's master, ``flask --app wsgi ...``, a script) Python prints this
    one line and exits with status 1, instead of a traceback per process.
    """

    def __init__(self, message):
        super().__init__(f"jwt-server: {message}")


class DatabaseFileGone(sqlite3.OperationalError):
    """The database file was deleted or replaced while the server ran."""

    # As SQLite reports a file it cannot open: a retry can find one at the path.
    sqlite_errorcode = SQLITE_CANTOPEN


def is_transient(error):
    """True for a database error that a retry can fix; False for a bug (bad SQL, a missing column)."""
    if isinstance(error, psycopg.Error):
        return postgres.is_transient(error)
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in TRANSIENT_SQLITE_CODES
    # Python < 3.11 gives no result code: judge by SQLite's message.
    message = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and any(word in message for word in _TRANSIENT_MESSAGES)


def connect(path):
    """A connection of its own, outside any request: to an existing SQLite file, or to PostgreSQL."""
    if postgres.is_url(path):
        return postgres.connect(path, connect_timeout=BUSY_TIMEOUT_SECONDS)
    connection = sqlite3.connect(
        f"file:{quote(path)}?mode=rw",
        uri=True,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        # Idle connections are the worker's, not a thread's: one lent to a
        # request on one thread may be lent to the next on another (gthread
        # workers, threads in tests), never to two at once.
        check_same_thread=False,
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    # WAL's default, NORMAL, survives a killed process but may lose the last
    # commits on power loss; an acknowledged write must survive both.
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def file_identity(path):
    """``(device, inode)`` of the file at ``path``."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise DatabaseFileGone(f"{path} does not exist") from None
    return status.st_dev, status.st_ino


def get_db():
    if "db" not in g:
        pool = current_app.extensions.get("jwt_server.pool")
        if pool is not None:
            g.db = pool.getconn()
            return g.db
        path = current_app.config["DATABASE"]
        g.db, g.db_file = borrow_connection(path)
        g.db_path = path
    return g.db


def borrow_connection(path):
    """An idle connection of this worker to ``path`` and the file it reads, or a new one.

    A connection that reads another file than the one now at ``path`` (it
    was deleted or replaced) is closed, and this request answers 503.
    """
    idle = current_app.extensions["jwt_server.connections"]
    try:
        identity = file_identity(path)
        kept, kept_path, kept_file = idle.pop()
    except IndexError:
        return connect(path), identity
    except DatabaseFileGone:
        close_all(idle)
        raise
    if (kept_path, kept_file) == (path, identity):
        return kept, kept_file
    kept.close()
    if kept_path != path:  # the app's DATABASE changed (tests do that)
        return connect(path), identity
    raise DatabaseFileGone(f"{path} was replaced since this connection opened it")


def close_all(idle):
    while idle:
        try:
            idle.pop()[0].close()
        except IndexError:
            return


def release_db(exception=None):
    """Give the request's connection back to the worker's idle ones, or close it after an error."""
    connection = g.pop("db", None)
    if connection is None:
        return
    if not is_sqlite(connection):
        current_app.extensions["jwt_server.pool"].putconn(connection)
        return
    idle = current_app.extensions["jwt_server.connections"]
    if exception is not None or connection.in_transaction or len(idle) >= MAX_IDLE_CONNECTIONS:
        connection.close()
        return
    idle.append((connection, g.pop("db_path"), g.pop("db_file")))


def is_sqlite(connection):
    return isinstance(connection, sqlite3.Connection)


@contextmanager
def transaction(connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises.

    Inside a transaction already, the block simply joins it: the outer one
    commits or rolls back everything. On PostgreSQL it is a READ COMMITTED
    transaction (a savepoint inside another): the statements that must not
    race lock the rows they change.
    """
    if not is_sqlite(connection):
        with connection.transaction():
            yield connection
        return
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


def notify_on_commit(connection, channel, payload):
    """PostgreSQL: NOTIFY ``channel`` when the transaction commits (never if it rolls back).

    SQLite needs none: its listeners on this host learn of each commit from
    the database file itself (fanout.CommitWatcher).
    """
    if not is_sqlite(connection):
        connection.execute("SELECT pg_notify(?, ?)", (channel, payload))


def serialize(connection, name):
    """Inside a transaction: wait until no other transaction that serializes on ``name`` is running.

    SQLite's BEGIN IMMEDIATE already lets one writer in at a time. On
    PostgreSQL, transactions that read rows and decide from them (the last
    administrator) take a transaction-scoped advisory lock named ``name``.
    """
    if not is_sqlite(connection):
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (name,))


def migration_steps(text, name="migrations.sql"):
    """``[(number, [statement, ...]), ...]`` from the text of a migrations file."""
    headers = list(_STEP_HEADER.finditer(text))
    steps = []
    for header, following in zip(headers, headers[1:] + [None]):
        body = text[header.end() : following.start() if following else len(text)]
        steps.append((int(header.group(1)), split_statements(body)))
    numbers = [number for number, _ in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(f"{name} steps must be numbered 1, 2, 3...; found {numbers}")
    return steps


def split_statements(sql):
    complete_statement = statement_completeness_check()
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        line.strip().startswith("--") or not line.strip() for line in pending.splitlines()
    ):
        raise MigrationError(f"migrations.sql ends with an unfinished statement: {pending.strip()[:60]}")
    return statements


@functools.cache
def statement_completeness_check():
    """SQLite's own ``sqlite3_complete``: is this text one or more whole statements?

    CPython's sqlite3 module offers it as ``complete_statement``; PyPy's has
    none, so it is called in the SQLite library that module is linked with.
    """
    if hasattr(sqlite3, "complete_statement"):
        return sqlite3.complete_statement
    import ctypes
    import ctypes.util

    library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    library.sqlite3_complete.argtypes = [ctypes.c_char_p]
    library.sqlite3_complete.restype = ctypes.c_int
    return lambda text: library.sqlite3_complete(text.encode()) == 1


def migrate(database, migrations_path=None):
    """Bring the database (a SQLite path or a PostgreSQL URL) up to its last step."""
    if postgres.is_url(database):
        postgres.migrate(database, postgres_steps(migrations_path), MigrationError)
    else:
        migrate_sqlite(database, migrations_path or MIGRATIONS_PATH)


def postgres_steps(migrations_path=None):
    path = Path(migrations_path or POSTGRES_MIGRATIONS_PATH)
    return migration_steps(path.read_text(), path.name)


def migrate_sqlite(path, migrations_path=MIGRATIONS_PATH):
    """Bring the SQLite database at ``path`` (created if absent) up to the last step.

    Safe when several workers start at once on the same file: the version is
    read again after BEGIN IMMEDIATE, so the first worker applies the steps
    and the others, waiting on the lock, find nothing left to do.
    """
    steps = migration_steps(Path(migrations_path).read_text())
    try:
        create_if_absent(path)
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS * 3, isolation_level=None)
        try:
            enable_wal(connection)
            connection.execute("PRAGMA foreign_keys = OFF")
            if schema_version(connection) != steps[-1][0]:
                apply_steps(connection, path, steps)
        finally:
            connection.close()
    except (sqlite3.Error, OSError) as error:
        raise MigrationError(f"cannot open {path}: {explain(error, path)}") from None


def apply_steps(connection, path, steps):
    latest = steps[-1][0]
    with transaction(connection):
        current = schema_version(connection)
        if current > latest:
            raise MigrationError(
                f"cannot upgrade {path}: it is at schema step {current}, newer than this code's {latest}; "
                "run the newer code, or restore the backup taken before it ran"
            )
        for number, statements in steps[current:]:
            for statement in statements:
                try:
                    connection.execute(statement)
                except sqlite3.Error as error:
                    reason = why_step_failed(connection, number, error)
                    raise MigrationError(f"cannot upgrade {path}: {reason}") from None
        if connection.execute("PRAGMA foreign_key_check").fetchone():
            raise MigrationError(f"cannot upgrade {path}: step {latest} left broken foreign keys")
        connection.execute(f"PRAGMA user_version = {int(latest)}")


def why_step_failed(connection, number, error):
    """What an operator must know about a failed step: for duplicate usernames, which ones and the fix."""
    pairs = usernames_differing_by_case(connection) if isinstance(error, sqlite3.IntegrityError) else []
    if not pairs:
        return f"migration step {number} failed: {error}"
    named = ", ".join(
        f"{first!r} (id {first_id}) and {second!r} (id {second_id})" for first_id, first, second_id, second in pairs
    )
    return (
        f"usernames {named} differ only by case; rename one of each pair "
        f"(UPDATE users SET username = 'new name' WHERE id = {pairs[0][2]}) and start again"
    )


def usernames_differing_by_case(connection):
    """``[(id, username, other id, other username), ...]``: the pairs a case-blind unique index refuses."""
    return connection.execute(
        """
        SELECT first.id, first.username, second.id, second.username
        FROM users AS first JOIN users AS second
            ON lower(second.username) = lower(first.username) AND second.id > first.id
        ORDER BY first.id, second.id
        """
    ).fetchall()


def explain(error, path):
    """One line on a database or file error, with what to do about it."""
    if isinstance(error, OSError):
        return f"{error.strerror} ({error.filename})"
    message = str(error)
    if "locked" in message or "busy" in message:
        return f"{message}: another process held the write lock for {BUSY_TIMEOUT_SECONDS} s; try again"
    if any(word in message.lower() for word in ("readonly", "read-only", "unable to open", "could not open")):
        return (
            f"{message}: the user running this ({current_user()}) must be able to write {path} and its "
            "directory, where SQLite keeps its -wal and -shm files; run it as the service's user"
        )
    return message


def current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def create_if_absent(path):
    """An empty file (an empty database to SQLite) that only its owner can read.

    It will hold password hashes. SQLite gives the -wal and -shm files it
    makes next to it the same permissions.
    """
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def prepare_before_fork(path):
    """Create and migrate the database in gunicorn's master, before any worker starts."""
    migrate(path)
    _prepared_before_fork.add(path)


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
            # Read to its end: on PyPy a statement whose row was never read
            # stays active until its cursor is collected, and SQLite then
            # refuses the migration's DROP TABLE ("database table is locked").
            connection.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def schema_version(connection):
    return connection.execute("PRAGMA user_version").fetchone()[0]


def ping():
    """One round trip to the database, on a fresh SQLite connection.

    Not a worker's open SQLite connection: that one would still read a file
    that has been deleted or moved away since.
    """
    database = current_app.config["DATABASE"]
    if postgres.is_url(database):
        get_db().execute("SELECT 1").fetchone()
        return
    connection = connect(database)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()


def close(app):
    """Close this process's PostgreSQL pool (tests build many apps in one process)."""
    pool = app.extensions.get("jwt_server.pool")
    if pool is not None:
        pool.close()


def init_app(app):
    database = app.config["DATABASE"]
    if database not in _prepared_before_fork:
        migrate(database)
    if postgres.is_url(database):
        app.extensions["jwt_server.pool"] = postgres.ProcessPool(
            database, app.config["DATABASE_POOL_SIZE"], BUSY_TIMEOUT_SECONDS
        )
    # Idle connections, lent to one request at a time. A list, not a
    # thread-local: under gevent every request is a greenlet of its own.
    app.extensions["jwt_server.connections"] = []
    app.teardown_appcontext(release_db)


def one_line_cli_errors(app, group=None):
    """Let every command on ``app.cli`` end a database it cannot use with one line, not a traceback.

    A database that stays locked, or a file or directory the command's user
    cannot write, is click's ``Error: ...`` and exit status 1; a bug still
    shows its traceback. Blueprints share their Command objects between apps,
    so each app gets copies.
    """
    group = group or app.cli
    for name, command in group.commands.items():
        command = copy.copy(command)
        if isinstance(command, click.Group):
            command.commands = dict(command.commands)
            one_line_cli_errors(app, command)
        else:
            command.callback = _reporting_database_errors(command.callback, app.config["DATABASE"])
        group.commands[name] = command


def _reporting_database_errors(callback, path):
    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (sqlite3.Error, psycopg.Error) as error:
            if not is_transient(error):
                raise
            if postgres.is_url(path):
                raise click.ClickException(f"the database is unavailable: {redact(str(error), path)}") from None
            raise click.ClickException(f"{path}: {explain(error, path)}") from None

    return run
