"""End to end: the real ``gunicorn -c gunicorn.conf.py wsgi:app``, several workers.

The HTTP client is the standard library's, so what is tested is the server
as any client sees it. Every wait is bounded.
"""
import json
import re
import signal
import sqlite3
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwt_server.db import migrate
from tests.helpers import PASSWORD, PROJECT_ROOT, clean_environment
from tests.servers import GUNICORN, START_TIMEOUT, free_port, register_and_login

pytestmark = pytest.mark.e2e

MIGRATIONS = (PROJECT_ROOT / "migrations.sql").read_text()
STEP_COUNT = len(re.findall(r"^-- step \d+:", MIGRATIONS, re.MULTILINE))


def schema(database):
    connection = sqlite3.connect(database)
    try:
        return sorted(connection.execute("SELECT type, name, sql FROM sqlite_master"))
    finally:
        connection.close()


def stored_pets(database):
    connection = sqlite3.connect(database)
    try:
        return set(connection.execute("SELECT id, user_id, name FROM pets"))
    finally:
        connection.close()


def test_e2e_register_log_in_add_a_pet_and_list_it(start_gunicorn):
    server = start_gunicorn()
    registered = server.call("POST", "/users", {"username": "travis", "password": PASSWORD})
    assert registered.status == 201
    assert registered.body["username"] == "travis"
    assert registered.body["is_admin"] is False
    assert "password" not in json.dumps(registered.body)

    answer = server.call("POST", "/auth", {"username": "Travis", "password": PASSWORD})
    assert answer.status == 200
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["expires_in"] == 900
    assert answer.headers["Cache-Control"] == "no-store"
    token = answer.body["access_token"]

    created = server.call("POST", "/pets", {"name": "Bunny", "species": "dog"}, token)
    assert created.status == 201
    assert created.headers["Location"].endswith(f"/pets/{created.body['id']}")
    assert created.body == {"id": created.body["id"], "name": "Bunny", "species": "dog"}

    listed = server.call("GET", "/my-pets", token=token)
    assert listed.status == 200
    assert listed.body == [created.body]


def test_e2e_wrong_password_is_a_problem_document(start_gunicorn):
    server = start_gunicorn()
    register_and_login(server, "travis")
    answer = server.call("POST", "/auth", {"username": "travis", "password": "wrong password"})
    assert answer.status == 401
    assert answer.headers.get_content_type() == "application/problem+json"
    assert answer.body["code"] == "invalid_credentials"
    assert server.call("GET", "/my-pets").status == 401


def test_e2e_concurrent_writes_in_several_workers_lose_nothing(start_gunicorn):
    server = start_gunicorn(workers=4)
    with ThreadPoolExecutor(max_workers=8) as pool:
        users = list(pool.map(lambda n: register_and_login(server, f"user{n}"), range(8)))

    def add_pet(number):
        user_id, token = users[number % len(users)]
        answer = server.call("POST", "/pets", {"name": f"pet-{number}"}, token)
        return user_id, answer

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(add_pet, range(200)))

    statuses = Counter(answer.status for _, answer in results)
    assert statuses == {201: 200}, [answer.body for _, answer in results if answer.status != 201][:3]
    acknowledged = {(answer.body["id"], user_id, answer.body["name"]) for user_id, answer in results}
    assert len(acknowledged) == 200
    assert stored_pets(server.database) == acknowledged
    for _, token in users:
        assert len(server.call("GET", "/my-pets", token=token).body) == 25


def test_e2e_six_workers_starting_on_a_new_database_all_come_up(start_gunicorn, tmp_path):
    database = tmp_path / "new" / "e2e.sqlite"
    server = start_gunicorn(workers=6, database=database)
    with ThreadPoolExecutor(max_workers=12) as pool:
        users = list(pool.map(lambda n: register_and_login(server, f"user{n}"), range(12)))
    assert len({user_id for user_id, _ in users}) == 12
    for _, token in users:
        assert server.call("GET", "/my-pets", token=token).status == 200

    # A worker that failed to boot would have logged a traceback, and made
    # gunicorn halt with a non-zero status; a graceful stop waits for them all.
    assert server.stop(signal.SIGTERM) == 0, server.stderr()
    log = server.stderr()
    assert log.count("Booting worker with pid") == 6, log
    assert "Traceback" not in log
    assert "failed to boot" not in log.lower()

    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == STEP_COUNT
        assert connection.execute("SELECT count(*) FROM users").fetchone()[0] == 12
    finally:
        connection.close()
    reference = tmp_path / "reference.sqlite"
    migrate(str(reference))
    assert schema(database) == schema(reference)


def test_e2e_acknowledged_pets_survive_sigkill(start_gunicorn):
    server = start_gunicorn(workers=4)
    user_id, token = register_and_login(server, "travis")

    def add_pet(number):
        return server.call("POST", "/pets", {"name": f"pet-{number}"}, token)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(add_pet, range(40)))
    assert [answer.status for answer in answers] == [201] * 40
    acknowledged = {(answer.body["id"], user_id, answer.body["name"]) for answer in answers}

    server.stop(signal.SIGKILL)
    assert server.process.returncode == -signal.SIGKILL
    assert stored_pets(server.database) == acknowledged


def test_e2e_bad_configuration_stops_gunicorn_with_one_line(tmp_path):
    database = tmp_path / "e2e.sqlite"
    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=PROJECT_ROOT,
        env=clean_environment(
            DATABASE_URL=f"sqlite:///{database}",
            JWT_SECRET="short",
            WEB_CONCURRENCY="2",
            BIND=f"127.0.0.1:{free_port()}",
        ),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "JWT_SECRET" in lines[0]
    assert "Traceback" not in result.stderr
    assert not database.exists()
