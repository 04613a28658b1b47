"""The user commands: flask create-user and flask set-password."""
import bcrypt
import pytest

from tests.helpers import NEW_PASSWORD, PASSWORD, can_log_in, log_in, register, users_table


def twice(password):
    return f"{password}\n{password}\n"


def user_row(database, username):
    return database.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()


# create-user


def test_create_user_stores_the_user_and_prints_its_id(runner, client, database):
    result = runner.invoke(args=["create-user", "alice"], input=twice(PASSWORD))

    assert result.exit_code == 0, result.output
    row = user_row(database, "alice")
    assert row is not None
    assert row["is_admin"] == 0
    assert bcrypt.checkpw(PASSWORD.encode(), row["password_hash"].encode())
    assert result.output.strip().splitlines()[-1] == str(row["id"])
    assert PASSWORD not in result.output
    assert can_log_in(client, "alice", PASSWORD)


def test_create_user_with_admin_flag_makes_an_administrator(runner, client, database):
    result = runner.invoke(args=["create-user", "root", "--admin"], input=twice(PASSWORD))

    assert result.exit_code == 0, result.output
    assert user_row(database, "root")["is_admin"] == 1
    assert client.get("/users", headers=log_in(client, "root").headers).status_code == 200


@pytest.mark.parametrize(
    "username, answers",
    [
        pytest.param("alice", f"{PASSWORD}\n{NEW_PASSWORD}\n", id="confirmation-mismatch"),
        pytest.param("alice", twice("short"), id="password-too-short"),
        pytest.param("alice", twice("a" * 73), id="password-73-bytes"),
        pytest.param("alice", twice("\u00e9" * 36 + "a"), id="password-73-utf8-bytes"),
        pytest.param("al", twice(PASSWORD), id="username-too-short"),
        pytest.param("a" * 33, twice(PASSWORD), id="username-too-long"),
        pytest.param("al ice", twice(PASSWORD), id="username-with-space"),
        pytest.param("alice!", twice(PASSWORD), id="username-with-bang"),
        pytest.param("", twice(PASSWORD), id="username-empty"),
    ],
)
def test_create_user_fails_and_creates_nothing(runner, database, username, answers):
    result = runner.invoke(args=["create-user", username], input=answers)

    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert users_table(database) == []
    assert PASSWORD not in result.output
    assert NEW_PASSWORD not in result.output


@pytest.mark.parametrize("spelling", ["alice", "ALICE", "Alice"])
def test_create_user_refuses_a_username_taken_in_any_case(runner, client, database, spelling):
    register(client, "alice")
    before = users_table(database)

    result = runner.invoke(args=["create-user", spelling], input=twice(NEW_PASSWORD))

    assert result.exit_code != 0
    assert "taken" in result.output
    assert users_table(database) == before
    assert not can_log_in(client, "alice", NEW_PASSWORD)


# set-password


def test_set_password_lets_the_new_password_in_and_keeps_the_old_out(runner, client, database):
    register(client, "alice")
    old_hash = user_row(database, "alice")["password_hash"]

    result = runner.invoke(args=["set-password", "alice"], input=twice(NEW_PASSWORD))

    assert result.exit_code == 0, result.output
    assert user_row(database, "alice")["password_hash"] != old_hash
    assert NEW_PASSWORD not in result.output
    assert can_log_in(client, "alice", NEW_PASSWORD)
    assert not can_log_in(client, "alice", PASSWORD)


def test_set_password_finds_the_user_in_any_case(runner, client):
    register(client, "alice")

    result = runner.invoke(args=["set-password", "ALICE"], input=twice(NEW_PASSWORD))

    assert result.exit_code == 0, result.output
    assert can_log_in(client, "alice", NEW_PASSWORD)


def test_set_password_for_an_unknown_user_fails(runner, client, database):
    register(client, "alice")
    before = users_table(database)

    result = runner.invoke(args=["set-password", "bob"], input=twice(NEW_PASSWORD))

    assert result.exit_code != 0
    assert "bob" in result.output
    assert users_table(database) == before


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param(twice("short"), id="too-short"),
        pytest.param(f"{NEW_PASSWORD}\n{NEW_PASSWORD}x\n", id="confirmation-mismatch"),
    ],
)
def test_set_password_with_a_bad_password_changes_nothing(runner, client, database, answers):
    register(client, "alice")
    before = users_table(database)

    result = runner.invoke(args=["set-password", "alice"], input=answers)

    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert users_table(database) == before
    assert can_log_in(client, "alice", PASSWORD)
