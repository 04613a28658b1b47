"""A throwaway PostgreSQL server for the tests: Debian's initdb and pg_ctl in a temporary directory.

Nothing of the machine's own PostgreSQL is used: the cluster lives in its own
directory, listens on a unix socket there (and on a TCP address when asked),
trusts local connections, and is deleted afterwards. PostgreSQL refuses to
run as root, so under root the server runs as the ``postgres`` user that
Debian's package creates. Durability is switched off: these databases live
for one test.
"""
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

SUPERUSER = "postgres"
FAST_AND_FORGETFUL = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def binary(name):
    """A PostgreSQL program from PATH, or from Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package (make system-packages)")
    return found


def run_as():
    """The user the server runs as: ``postgres`` under root (initdb refuses root), else ourselves."""
    return SUPERUSER if os.geteuid() == 0 else None


class PostgresServer:
    """One cluster in ``directory``; ``listen`` adds a TCP address (``host``) on ``port``."""

    def __init__(self, directory=None, listen="", port=5432, prefix=()):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="jwt-server-pg-"))
        self.data = self.directory / "data"
        self.listen, self.port = listen, port
        self.user = run_as()
        self.prefix = list(prefix)  # e.g. ip netns exec NAME: where the server runs
        self._names = itertools.count(1)

    def command(self, *args):
        switch_user = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run(
            [*self.prefix, *switch_user, *args],
            # The server's own directory: the project's may be closed to the postgres user.
            cwd=self.directory, check=True, capture_output=True, text=True, timeout=60,
        )

    def initdb(self):
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.command(
            binary("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        if self.listen:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all 0.0.0.0/0 trust\n")

    def start(self):
        if not self.data.exists():
            self.initdb()
        options = [
            "-k", str(self.directory), "-p", str(self.port), "-c", f"listen_addresses={self.listen}",
            "-c", "max_connections=300", *FAST_AND_FORGETFUL,
        ]
        self.command(
            binary("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"),
            "-w", "-t", "30", "-o", " ".join(options), "start",
        )
        return self

    def stop(self, mode="fast"):
        if (self.data / "postmaster.pid").exists():
            self.command(binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self):
        self.stop()
        self.start()

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, dbname="postgres", host=None):
        """A URL for ``dbname``: over the unix socket, or over TCP to ``host``."""
        if host:
            return f"postgresql://{SUPERUSER}@{host}:{self.port}/{dbname}"
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.directory}&port={self.port}"

    def execute(self, sql, dbname="postgres"):
        with psycopg.connect(self.url(dbname), autocommit=True) as connection:
            connection.execute(sql)

    def create_database(self, template=None):
        """A new empty database (a copy of ``template``, if given): its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self.execute(f"CREATE DATABASE {name}{copy}")
        return name

    def empty(self, dbname):
        """Delete every row of every table but schema_version, and restart every id at 1.

        Much faster than a new database per test (CREATE DATABASE copies files).
        """
        with psycopg.connect(self.url(dbname), autocommit=True) as connection:
            tables = [row[0] for row in connection.execute(
                "SELECT quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename != 'schema_version'"
            )]
            sequences = [row[0] for row in connection.execute(
                "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"
            )]
            with connection.transaction():
                connection.execute("SET LOCAL session_replication_role = replica")  # no foreign-key order
                for table in tables:
                    connection.execute(f"DELETE FROM {table}")
                for sequence in sequences:
                    connection.execute(f"ALTER SEQUENCE {sequence} RESTART")

    def drop_database(self, name):
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
