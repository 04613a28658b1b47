"""PostgreSQL: the same schema as SQLite, no race across hosts, outages, the move from SQLite.

"Two hosts" here are two apps, each with its own pool, on one database: what
two gunicorn hosts behind a load balancer are to PostgreSQL.
"""
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwt_server import config, db, postgres, security
from jwt_server.config import ConfigError, load_config
from tests.helpers import PASSWORD, SECRET, assert_problem, build_app, log_in, open_database, register, table_names
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.postgresql_only


def broad_type(declared):
    declared = declared.lower()
    if "int" in declared:
        return "integer"
    if declared in ("text", "citext", "user-defined") or "char" in declared:
        return "text"
    return declared


def sqlite_columns(path):
    connection = sqlite3.connect(path)
    try:
        return {
            (table, name, not (notnull or pk), broad_type(kind))
            for table in table_names(connection)
            for _, name, kind, notnull, _, pk in connection.execute(f"PRAGMA table_info({table})")
        }
    finally:
        connection.close()


def postgres_columns(url):
    with open_database(url) as connection:
        return {
            (row["table_name"], row["column_name"], row["is_nullable"] == "YES", broad_type(row["data_type"]))
            for row in connection.execute(
                """
                SELECT table_name, column_name, is_nullable, data_type FROM information_schema.columns
                WHERE table_schema = 'public' AND table_name != 'schema_version'
                """
            )
        }


def test_both_schema_histories_end_in_the_same_tables_and_columns(tmp_path, postgres_server):
    sqlite_path = str(tmp_path / "schema.sqlite")
    db.migrate(sqlite_path)
    name = postgres_server.create_database()
    try:
        db.migrate(postgres_server.url(name))
        assert postgres_columns(postgres_server.url(name)) == sqlite_columns(sqlite_path)
        steps = db.migration_steps(db.MIGRATIONS_PATH.read_text())
        with open_database(postgres_server.url(name)) as connection:
            assert connection.execute("SELECT version FROM schema_version").fetchone()[0] == len(steps)
    finally:
        postgres_server.drop_database(name)


def test_workers_starting_at_once_migrate_a_new_database_once(postgres_server):
    name = postgres_server.create_database()
    url = postgres_server.url(name)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: db.migrate(url), range(8)))
        with open_database(url) as connection:
            assert [tuple(row) for row in connection.execute("SELECT version FROM schema_version")] == [
                (len(db.postgres_steps()),)
            ]
    finally:
        postgres_server.drop_database(name)


def test_placeholders_become_psycopgs_once_outside_quotes():
    assert postgres.to_pyformat("SELECT ? WHERE a = :name AND b = '?:x' AND c::text LIKE '5%'") == (
        "SELECT %s WHERE a = %(name)s AND b = '?:x' AND c::text LIKE '5%%'"
    )


# Races between two hosts


@pytest.fixture
def two_hosts(app):
    """A second app (its own pool) on the first one's database: ``(client A, client B)``."""
    other = build_app(app.config["DATABASE"])
    yield app.test_client(), other.test_client()
    db.close(other)


def at_once(count, work):
    """Run ``work(i)`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_one_username_registered_at_once_on_two_hosts_gives_one_201(two_hosts, database):
    statuses = at_once(
        12,
        lambda i: two_hosts[i % 2]
        .post("/users", json={"username": ["Rex", "rex"][i % 2], "password": PASSWORD})
        .status_code,
    )
    assert sorted(statuses) == [201] + [409] * 11
    assert database.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_parallel_wrong_guesses_on_two_hosts_get_at_most_the_limit_of_bcrypt_checks(two_hosts, monkeypatch):
    register(two_hosts[0])
    checks = []
    real_check = security.check_password
    monkeypatch.setattr(security, "check_password", lambda *args: checks.append(1) or real_check(*args))
    statuses = at_once(
        30, lambda i: two_hosts[i % 2].post("/auth", json={"username": "travis", "password": "wrong guess"}).status_code
    )
    assert len(checks) <= 5
    assert statuses.count(401) == len(checks) and statuses.count(429) == 30 - len(checks)


def test_a_refresh_raced_on_two_hosts_rotates_once(two_hosts):
    register(two_hosts[0])
    tokens = two_hosts[0].post("/auth", json={"username": "travis", "password": PASSWORD}).get_json()
    answers = at_once(
        10, lambda i: two_hosts[i % 2].post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )
    assert sorted(answer.status_code for answer in answers) == [200] + [401] * 9
    winner = next(answer for answer in answers if answer.status_code == 200).get_json()
    # The losers were reuse: the session is gone, the winner's tokens too.
    me = two_hosts[1].get("/users/me", headers={"Authorization": f"Bearer {winner['access_token']}"})
    assert_problem(me, 401, "invalid_token")


def test_a_logout_on_one_host_ends_the_token_on_the_other(two_hosts):
    register(two_hosts[0])
    headers = log_in(two_hosts[0]).headers
    assert two_hosts[1].get("/users/me", headers=headers).status_code == 200
    assert two_hosts[1].post("/auth/logout", headers=headers).status_code == 204
    assert_problem(two_hosts[0].get("/users/me", headers=headers), 401, "invalid_token")


def test_an_account_deleted_under_load_leaves_no_pet_and_no_500(two_hosts, database):
    register(two_hosts[0])
    headers = log_in(two_hosts[0]).headers

    def work(i):
        if i == 10:
            return two_hosts[1].delete("/users/me", json={"password": PASSWORD}, headers=headers).status_code
        return two_hosts[i % 2].post("/pets", json={"name": f"pet {i}"}, headers=headers).status_code

    statuses = at_once(20, work)
    assert statuses[10] == 204
    assert set(statuses) <= {201, 204, 401}
    assert database.execute("SELECT count(*) FROM pets").fetchone()[0] == 0


# Outages


@pytest.fixture
def own_server():
    """A PostgreSQL server this test may stop and start."""
    server = PostgresServer().start()
    yield server
    server.destroy()


def test_postgresql_stopped_gives_503_then_service_resumes_without_restart(own_server, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 2)
    app = build_app(own_server.url())
    client = app.test_client()
    register(client)
    headers = log_in(client).headers
    try:
        own_server.stop()
        started = time.monotonic()
        for path in ("/my-pets", "/health"):
            response = client.get(path, headers=headers)
            assert_problem(response, 503, "database_unavailable")
            assert response.headers["Retry-After"].isdigit()
        assert time.monotonic() - started < 10
        own_server.start()
        deadline = time.monotonic() + 20
        while client.get("/my-pets", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "service did not resume after PostgreSQL came back"
            time.sleep(0.2)
        assert client.get("/health").status_code == 200
    finally:
        db.close(app)


# Configuration


def test_postgresql_needs_jwt_secret():
    with pytest.raises(ConfigError) as refused:
        load_config({"DATABASE_URL": "postgresql://app:pw@db.internal:5432/jwt"})
    assert "JWT_SECRET" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("url", ["postgresql://app:hunter2hunter2@db:99999/jwt", "postgres://app:hunter2hunter2@db/jwt?nonsense=1"])
def test_a_bad_postgresql_url_is_named_without_its_password(url):
    with pytest.raises(ConfigError) as refused:
        load_config({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    message = str(refused.value)
    assert "DATABASE_URL" in message and "hunter2hunter2" not in message and "\n" not in message


def test_postgres_urls_with_libpq_parameters_are_accepted():
    settings = load_config({"DATABASE_URL": "postgres://app:pw@db:5432/jwt?sslmode=require", "JWT_SECRET": SECRET})
    assert settings["DATABASE"] == "postgres://app:pw@db:5432/jwt?sslmode=require"
    assert settings["DATABASE_POOL_SIZE"] == config.WORKER_THREADS


# Moving house: copy-database


@pytest.fixture
def sqlite_app(tmp_path):
    return build_app(tmp_path / "old.sqlite", LOGIN_MAX_FAILURES=2)


def test_copy_database_keeps_everyone_logged_in_and_every_id(sqlite_app, postgres_server):
    old = sqlite_app.test_client()
    register(old, "travis")
    register(old, "alice")
    tokens = old.post("/auth", json={"username": "travis", "password": PASSWORD}).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    pets = [old.post("/pets", json={"name": name}, headers=headers).get_json() for name in ("Bunny", "Nemo", "Rex")]
    assert old.delete(f"/pets/{pets[-1]['id']}", headers=headers).status_code == 204
    for _ in range(2):
        old.post("/auth", json={"username": "alice", "password": "wrong guess"})
    name = postgres_server.create_database()
    url = postgres_server.url(name)
    try:
        result = sqlite_app.test_cli_runner().invoke(args=["copy-database", url])
        assert result.exit_code == 0, result.output
        assert "users: 2 rows copied" in result.output

        new_app = build_app(url, LOGIN_MAX_FAILURES=2)
        new = new_app.test_client()
        assert new.get("/my-pets", headers=headers).get_json() == pets[:2]
        refreshed = new.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        new_pet = new.post("/pets", json={"name": "Tom"}, headers=headers).get_json()
        assert new_pet["id"] == pets[-1]["id"] + 1  # the deleted pet's id is never handed out again
        assert register(new, "carol")["id"] == 3
        assert_problem(new.post("/auth", json={"username": "alice", "password": PASSWORD}), 429, "too_many_attempts")
        db.close(new_app)
    finally:
        postgres_server.drop_database(name)


def test_copy_database_refuses_a_target_with_users_and_changes_nothing(sqlite_app, app, database):
    register(sqlite_app.test_client(), "travis")
    register(app.test_client(), "someone")
    before = [tuple(row) for row in database.execute("SELECT * FROM users")]

    result = sqlite_app.test_cli_runner().invoke(args=["copy-database", app.config["DATABASE"]])

    assert result.exit_code != 0
    assert "already holds users" in result.output and len(result.output.strip().splitlines()) == 1
    assert [tuple(row) for row in database.execute("SELECT * FROM users")] == before


def test_copy_database_refuses_a_target_that_is_not_postgresql(sqlite_app, tmp_path):
    result = sqlite_app.test_cli_runner().invoke(args=["copy-database", f"sqlite:///{tmp_path}/other.sqlite"])
    assert result.exit_code != 0 and "PostgreSQL" in result.output
