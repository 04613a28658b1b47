"""PostgreSQL: a bounded pool per worker process, and SQL written once for both engines.

The rest of the package writes SQL as for SQLite, with ``?`` and ``:name``
placeholders; ``Connection.execute`` turns them into psycopg's ``%s`` and
``%(name)s`` (once per statement text) and rows come back as dicts, read by
column name or index like ``sqlite3.Row``. Connections run in autocommit mode, as the
SQLite ones do, and ``transaction()`` in db.py opens a READ COMMITTED
transaction with psycopg's ``Connection.transaction()``. The statements that
must not race across hosts take row locks (an ``UPDATE ... WHERE old value``,
an upsert) or rely on unique constraints, so they need no SERIALIZABLE retry.

Each worker process opens its own pool on its first request: a pool (its
sockets, its threads) must never be shared across a fork.
"""
import functools
import os
import re
import threading

import psycopg
from psycopg_pool import ConnectionPool

from .config import redact

# SQLSTATE classes a retry can fix: connection exceptions, transaction
# rollbacks (serialization failure, deadlock), insufficient resources (too
# many connections, disk full), operator intervention (shutdown, canceled),
# system errors.
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
_MIGRATION_LOCK = 7_370_937_412  # any constant: it names the lock of this schema's history
# A quoted string or identifier, a cast, or a placeholder; the rest is copied.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_][A-Za-z0-9_]*)|%")
# Pools this process inherited through a fork: kept referenced, never closed,
# because closing them would end the parent's sessions on the server.
_inherited_pools = []
_pools_lock = threading.Lock()


def let_ctypes_hold_weak_references():
    """PyPy before 7.3.18: let ``ctypes.py_object`` hold a weak reference, as CPython's does.

    PyPy runs psycopg's pure-Python libpq binding, which keeps
    ``py_object(weakref.ref(connection))`` for libpq's notice callback; PyPy's
    ctypes takes a weak reference to whatever a py_object holds, and a weak
    reference cannot have one, so no connection could open (PyPy issue 3882).
    An object that cannot be weakly referenced is held strongly instead, as
    PyPy's later releases do: one small object per connection opened.
    """
    try:
        from _ctypes import primitive  # PyPy's ctypes, in Python; CPython's has no such module
    except ImportError:
        return
    import ctypes
    import weakref

    try:
        ctypes.py_object(weakref.ref(let_ctypes_hold_weak_references))
        return
    except TypeError:
        pass
    container = primitive.pyobj_container
    add_weakly = container.add

    def add(obj):
        try:
            return add_weakly(obj)
        except TypeError:
            container.objs.append(lambda: obj)
            return len(container.objs) - 1

    container.add = add


let_ctypes_hold_weak_references()


def is_url(database):
    return database.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql):
    """``?`` and ``:name`` placeholders as psycopg's ``%s`` and ``%(name)s``."""

    def replace(match):
        token = match.group(0)
        if token == "?":
            return "%s"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token.replace("%", "%%")  # psycopg reads % even inside quotes

    return _TOKENS.sub(replace, sql)


class Row(tuple):
    """A row read by column name or by index, as ``sqlite3.Row`` is; ``dict(row)`` works too."""

    names = ()

    def __getitem__(self, key):
        return super().__getitem__(self.names.index(key) if isinstance(key, str) else key)

    def keys(self):
        return list(self.names)


@functools.lru_cache(maxsize=256)
def row_class(names):
    return type("Row", (Row,), {"names": names})


def named_rows(cursor):
    """psycopg row factory: ``Row`` of the cursor's columns."""
    return row_class(tuple(column.name for column in cursor.description or ()))


class Connection(psycopg.Connection):
    def execute(self, query, params=None, **kwargs):
        return super().execute(query if params is None else to_pyformat(query), params, **kwargs)

    def executemany(self, query, params_seq):
        with self.cursor() as cursor:
            cursor.executemany(to_pyformat(query), params_seq)
            return cursor


def connect(url, **kwargs):
    return Connection.connect(url, autocommit=True, row_factory=named_rows, **kwargs)


class ProcessPool:
    """The pool of the current process, opened on first use in each process."""

    def __init__(self, url, size, timeout):
        self.url, self.size, self.timeout = url, size, timeout
        self.pid, self.pool = None, None

    def get(self):
        if self.pid != os.getpid():
            with _pools_lock:
                if self.pid != os.getpid():
                    if self.pool is not None:
                        _inherited_pools.append(self.pool)
                    self.pool = ConnectionPool(
                        self.url,
                        min_size=self.size,
                        max_size=self.size,
                        timeout=self.timeout,
                        # Give up on one reconnection attempt within the busy
                        # timeout, so that its back-off never grows long: the
                        # next request starts a fresh attempt.
                        reconnect_timeout=self.timeout,
                        kwargs={"autocommit": True, "row_factory": named_rows},
                        connection_class=Connection,
                        name=f"jwt-server-{os.getpid()}",
                        open=True,
                    )
                    self.pid = os.getpid()
        return self.pool

    def getconn(self):
        return self.get().getconn()

    def putconn(self, connection):
        """Back to the pool: rolled back if left in a transaction, discarded if broken."""
        self.get().putconn(connection)

    def close(self):
        if self.pool is not None and self.pid == os.getpid():
            self.pool.close()
        self.pid, self.pool = None, None


def is_transient(error):
    """True for what a retry can fix (connection lost, pool timeout, shutdown...)."""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    # No SQLSTATE: the client side failed (no connection, pool timeout, closed socket).
    return isinstance(error, psycopg.OperationalError)


def migrate(url, steps, error_class):
    """Apply the steps above the stored version, once, however many processes start.

    Every worker of every host runs this at start-up: the advisory lock lets
    one of them apply the steps while the others wait, then read the new
    version under the lock and find nothing left to do.
    """
    try:
        connection = connect(url, connect_timeout=10)
    except psycopg.OperationalError as error:
        reason = " ".join(redact(str(error), url).split())
        raise error_class(f"cannot reach the database of DATABASE_URL: {reason}") from None
    with connection, connection.transaction():
        apply_steps(connection, steps, error_class)


def apply_steps(connection, steps, error_class):
    """The migration itself, inside the caller's transaction (copy-database joins it to the copy)."""
    latest = steps[-1][0]
    connection.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    current = row["version"] if row else 0
    if current > latest:
        raise error_class(f"the database is at schema step {current}, newer than this code's {latest}")
    for number, statements in steps[current:]:
        for statement in statements:
            try:
                connection.execute(statement)
            except psycopg.Error as error:
                raise error_class(f"migration step {number} failed: {error}") from error
    if current != latest:
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (latest,))
