"""The PostgreSQL row of make bench: GET /my-pets on PostgreSQL beside SQLite, in the same run.

A throwaway PostgreSQL server (the tests' own, tests/postgres_server.py) on
this machine, the same service on it, the same owner with the same pets.
The two servers alternate round by round, as every compared pair does here,
and the best round of each counts. PostgreSQL runs without fsync, which a
read-only measurement does not notice.
"""
import psycopg

from bench import harness, report
from bench.bare import PETS
from tests.postgres_server import PostgresServer

TARGET = 0.6  # PostgreSQL's GET /my-pets req/s over SQLite's, one host, same run


class Database:
    """The throwaway PostgreSQL server, stopped and deleted with the bench's other servers."""

    def __init__(self):
        self.server = PostgresServer().start()

    def stop(self):
        self.server.destroy()


def measure(plan, tmp, servers, setup, alternate, register_and_log_in, connections):
    """``{"postgres_my_pets", "sqlite_my_pets", "pool_connections"}``; servers are stopped by the caller."""
    database = Database()
    servers.append(database)
    url = database.server.url()
    service = harness.Server("service-postgresql", ["wsgi:app"], tmp, DATABASE_URL=url)
    servers.append(service)
    service.wait_ready("/health")
    owner_id, owner_token = register_and_log_in(service.url, "bench_owner")
    with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pets (user_id, name, species) VALUES (%s, %s, %s)",
            [(owner_id, pet["name"], pet["species"]) for pet in PETS],
        )
    options = {"token": owner_token, "connections": connections}
    harness.wrk(service.url + "/my-pets", seconds=plan.warmup, **options)
    sqlite_run, postgres_run = alternate(
        plan.rounds,
        lambda: harness.wrk(setup.service.url + "/my-pets", seconds=plan.seconds, token=setup.owner_token,
                            connections=connections),
        lambda: harness.wrk(service.url + "/my-pets", seconds=plan.seconds, **options),
    )
    with psycopg.connect(url, autocommit=True) as connection:
        pool_connections = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' AND pid != pg_backend_pid()"
        ).fetchone()[0]
    return {"sqlite_my_pets": sqlite_run, "postgres_my_pets": postgres_run, "pool_connections": pool_connections}


def print_figures(plan, figures):
    workers = figures["gunicorn"]["workers"]
    report.heading("PostgreSQL beside SQLite, one host, the same run:")
    report.runs([
        ("service on SQLite, GET /my-pets", figures["sqlite_my_pets"]),
        ("service on PostgreSQL, GET /my-pets", figures["postgres_my_pets"]),
    ])
    report.notes(
        f"PostgreSQL connections open after the load: {figures['pool_connections']} for {workers} workers"
        f" ({figures['pool_connections'] / workers:.1f} per worker; DATABASE_POOL_SIZE default"
        f" {figures['gunicorn']['threads']})"
    )
    ratio = figures["postgres_my_pets"]["rps"] / figures["sqlite_my_pets"]["rps"]
    report.targets([("GET /my-pets req/s, PostgreSQL / SQLite", ratio, ">=", TARGET)], not plan.smoke)
