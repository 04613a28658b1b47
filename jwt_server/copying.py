"""``flask --app wsgi copy-database TARGET_URL``: move an installation to PostgreSQL.

Everything is copied as it is (ids, hashes, sessions with their refresh-token
state, throttle counts), so nobody has to log in again, in one transaction on
the target: it holds all of it or, after any failure, nothing new. The source
is read inside one transaction too (on SQLite, BEGIN IMMEDIATE: a server
still running on it waits instead of writing what would not be copied).
"""
import click
import psycopg
from flask import Blueprint

from . import config, db, postgres

bp = Blueprint("copying", __name__, cli_group=None)

# Parents before children, so that every foreign key finds its row.
TABLES = (
    "users", "pets", "sessions", "login_throttle", "signing_keys",
    "event_counters", "realtime_events",
)
# The tables whose ids come from a sequence that must continue past the copied ids.
SEQUENCED = ("users", "pets", "sessions", "realtime_events")
PROGRESS_EVERY = 10_000


def source_tables(source):
    """The source's tables, which must all be known here (a new table must be added to TABLES)."""
    if not db.is_sqlite(source):
        rows = source.execute(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename != 'schema_version'"
        )
    else:
        rows = source.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")
    unknown = {row["name"] for row in rows} - set(TABLES)
    if unknown:
        raise click.ClickException(f"copy-database does not know the tables {sorted(unknown)}; nothing was copied.")


def high_water_mark(source, table):
    """The largest id ever handed out in ``table``, deleted rows included."""
    if not db.is_sqlite(source):
        row = source.execute(
            "SELECT coalesce(last_value, 0) AS seq FROM pg_sequences WHERE sequencename = ?", (f"{table}_id_seq",)
        ).fetchone()
    else:
        row = source.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    highest = source.execute(f"SELECT coalesce(max(id), 0) AS id FROM {table}").fetchone()["id"]
    return max(row["seq"] if row else 0, highest)


def refuse_unless_empty(target):
    for table in ("users", "pets"):
        if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
            raise click.ClickException(
                f"The target database already holds {table}: copy-database only fills an empty one. Nothing was copied."
            )


def copy_table(source, target, table):
    total = source.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]
    rows = source.execute(f"SELECT * FROM {table}")
    columns = [column[0] for column in rows.description]
    with target.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for done, row in enumerate(rows, 1):
            copy.write_row(tuple(row[column] for column in columns))
            if done % PROGRESS_EVERY == 0:
                click.echo(f"{table}: {done:,} of {total:,} rows")
    click.echo(f"{table}: {total:,} rows copied")


def copy_everything(source, target):
    refuse_unless_empty(target)
    for table in reversed(TABLES):
        target.execute(f"DELETE FROM {table}")  # what an empty installation may hold: throttle rows
    for table in TABLES:
        copy_table(source, target, table)
        if table in SEQUENCED:
            target.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), ?, true)",
                (max(high_water_mark(source, table), 1),),
            )


@bp.cli.command("copy-database")
@click.argument("target_url")
def copy_database_command(target_url):
    """Copy every row of this server's database into the empty PostgreSQL database TARGET_URL."""
    if not postgres.is_url(target_url):
        raise click.ClickException("TARGET_URL must be a PostgreSQL URL: postgresql://user:password@host:5432/dbname")
    try:
        config.postgres_url(target_url)
    except config.ConfigError as error:
        raise click.ClickException(str(error.code).removeprefix("jwt-server: configuration error: ")) from None
    source = db.get_db()
    try:
        with postgres.connect(target_url, connect_timeout=10) as target, db.transaction(source), target.transaction():
            source_tables(source)
            postgres.apply_steps(target, db.postgres_steps(), db.MigrationError)
            copy_everything(source, target)
    except (psycopg.Error, db.MigrationError) as error:
        raise click.ClickException(f"Nothing was copied: {config.redact(str(error), target_url)}") from None
    click.echo("Done: every row is in the target. Point DATABASE_URL at it and restart the servers.")
