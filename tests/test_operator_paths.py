"""What an operator sees when start-up or the command line cannot proceed: one line, no traceback."""
import sqlite3

import pytest

from jwt_server import db
from jwt_server.config import ConfigError, read_or_create_secret
from tests.helpers import NEW_PASSWORD, PASSWORD, assert_problem, build_koa_database


def contents(path):
    connection = sqlite3.connect(path)
    try:
        return (
            connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
            connection.execute("SELECT * FROM users ORDER BY id").fetchall(),
            connection.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        connection.close()


def refusal(path):
    """The SystemExit that migrate(path) ends with, and its one line."""
    with pytest.raises(SystemExit) as raised:
        db.migrate(str(path))
    message = str(raised.value.code)
    assert isinstance(raised.value.code, str)
    assert "\n" not in message and "\r" not in message
    return message


# A migration that cannot proceed


def test_usernames_differing_by_case_stop_the_migration_with_one_line_naming_them(tmp_path):
    path = build_koa_database(
        tmp_path / "db.sqlite", [(1, "Bob", "first password"), (2, "alice", "second pw"), (7, "bob", "third pw")]
    )
    before = contents(path)

    message = refusal(path)

    assert message.startswith(f"jwt-server: cannot upgrade {path}: ")
    assert "'Bob' (id 1) and 'bob' (id 7) differ only by case" in message
    assert "UPDATE users SET username = " in message and "WHERE id = 7" in message
    assert "start again" in message
    assert "alice" not in message
    assert contents(path) == before


def test_every_pair_of_usernames_differing_by_case_is_named(tmp_path):
    path = build_koa_database(
        tmp_path / "db.sqlite",
        [(1, "bob", "pw number 1"), (2, "BOB", "pw number 2"), (3, "eve", "pw number 3"), (4, "Eve", "pw number 4")],
    )

    message = refusal(path)

    assert "'bob' (id 1) and 'BOB' (id 2)" in message
    assert "'eve' (id 3) and 'Eve' (id 4)" in message


def test_a_username_with_a_line_break_is_still_named_on_one_line(tmp_path):
    path = build_koa_database(tmp_path / "db.sqlite", [(1, "mal\nlory", "pw number 1"), (2, "MAL\nLORY", "pw 2 xx")])

    message = refusal(path)

    assert "'mal\\nlory' (id 1) and 'MAL\\nLORY' (id 2)" in message


def test_create_app_stops_with_the_same_one_line(tmp_path, make_app):
    path = build_koa_database(tmp_path / "db.sqlite", [(1, "bob", "pw number 1"), (2, "BOB", "pw number 2")])

    with pytest.raises(SystemExit) as raised:
        make_app(DATABASE=str(path))

    assert "'bob' (id 1) and 'BOB' (id 2) differ only by case" in str(raised.value.code)


def test_after_the_rename_the_migration_proceeds(tmp_path, make_app, capsys):
    path = build_koa_database(tmp_path / "db.sqlite", [(1, "bob", "pw number 1"), (2, "BOB", "pw number 2")])
    refusal(path)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE users SET username = 'bob2' WHERE id = 2")
    connection.close()

    client = make_app(DATABASE=str(path)).test_client()

    response = client.post("/auth", json={"username": "bob2", "password": "pw number 2"})
    assert response.status_code == 200, response.get_json()


def test_a_database_newer_than_the_code_is_refused_in_one_line(tmp_path):
    path = tmp_path / "db.sqlite"
    db.migrate(str(path))
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 999")
    connection.close()

    message = refusal(path)

    assert str(path) in message and "999" in message


def test_a_database_path_that_cannot_be_opened_is_refused_in_one_line(tmp_path):
    path = tmp_path / "a-directory"
    path.mkdir()

    message = refusal(path)

    assert message.startswith(f"jwt-server: cannot open {path}: ")


# The command line on a database that stays locked


@pytest.fixture
def locked_database(make_app, monkeypatch):
    """An app whose database another connection holds the write lock of (a short busy timeout)."""
    app = make_app()
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO users (username, password_hash) VALUES ('holder', 'x')")
    yield app
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize(
    "args",
    [["create-user", "alice"], ["create-user", "alice", "--admin"]],
)
def test_cli_on_a_locked_database_fails_with_one_line(locked_database, args):
    result = locked_database.test_cli_runner().invoke(args=args, input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    last_line = result.output.strip().splitlines()[-1]
    assert last_line.startswith("Error: ") and "locked" in last_line
    assert locked_database.config["DATABASE"] in last_line


def test_set_password_on_a_locked_database_fails_with_one_line(make_app, monkeypatch):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["create-user", "alice"], input=f"{PASSWORD}\n{PASSWORD}\n").exit_code == 0
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = app.test_cli_runner().invoke(
            args=["set-password", "alice"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    client = app.test_client()
    assert client.post("/auth", json={"username": "alice", "password": PASSWORD}).status_code == 200


# The signing secret file


def test_a_secret_file_that_cannot_be_read_is_one_line_naming_it(tmp_path):
    path = tmp_path / "jwt-secret"
    path.mkdir()  # unreadable as a file, even for root

    with pytest.raises(ConfigError) as raised:
        read_or_create_secret(path)

    message = str(raised.value.code)
    assert "\n" not in message
    assert str(path) in message and "chown" in message


def test_a_secret_file_that_cannot_be_created_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the directory should be")

    with pytest.raises(ConfigError) as raised:
        read_or_create_secret(blocker / "jwt-secret")

    assert str(blocker / "jwt-secret") in str(raised.value.code)


# Koa passphrases longer than 72 bytes: Node's bcrypt hashed only the first 72

LONG_PASSPHRASE = "correct horse battery staple " * 3  # 87 bytes


@pytest.fixture
def long_passphrase_client(tmp_path, make_app):
    path = build_koa_database(tmp_path / "db.sqlite", [(1, "travis", LONG_PASSPHRASE)])
    return make_app(DATABASE=str(path)).test_client()


def test_a_koa_passphrase_over_72_bytes_is_refused_like_a_wrong_password(long_passphrase_client):
    response = long_passphrase_client.post("/auth", json={"username": "travis", "password": LONG_PASSPHRASE})

    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == "Incorrect username and/or password."


def test_a_koa_user_with_a_long_passphrase_gets_in_again_after_set_password(long_passphrase_client):
    app = long_passphrase_client.application
    result = app.test_cli_runner().invoke(args=["set-password", "travis"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output

    response = long_passphrase_client.post("/auth", json={"username": "travis", "password": NEW_PASSWORD})

    assert response.status_code == 200
