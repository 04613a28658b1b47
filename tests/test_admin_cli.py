"""Administration on the command line: list-users, set-admin, disable-user,
enable-user, delete-user, revoke-sessions, and the prompts' manners."""
import pytest

from tests.helpers import NEW_PASSWORD, PASSWORD, log_in, post_login, register


def row(database, username):
    return database.execute(
        "SELECT id, is_admin, disabled FROM users WHERE username = ?", (username,)
    ).fetchone()


def assert_one_line_error(result, words):
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and words in last, result.output


def test_list_users_shows_each_user_with_flags(runner, client, database):
    register(client, "travis")
    register(client, "alice")
    database.execute("UPDATE users SET is_admin = 1 WHERE username = 'alice'")
    database.commit()
    log_in(client)

    result = runner.invoke(args=["list-users"])

    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[:3] for line in lines] == [["1", "travis", "-"], ["2", "alice", "admin"]]
    assert "last login never" in lines[1] and "last login never" not in lines[0]


def test_set_admin_on_and_off(runner, client, database):
    register(client, "travis")
    register(client, "alice")

    assert runner.invoke(args=["set-admin", "TRAVIS", "--on"]).exit_code == 0
    assert row(database, "travis")["is_admin"] == 1
    assert runner.invoke(args=["set-admin", "alice", "--on"]).exit_code == 0
    assert runner.invoke(args=["set-admin", "travis", "--off"]).exit_code == 0
    assert row(database, "travis")["is_admin"] == 0


def test_the_last_admin_guard_holds_on_the_command_line(runner, client, database):
    register(client, "travis")
    runner.invoke(args=["set-admin", "travis", "--on"])

    for args in (["set-admin", "travis", "--off"], ["disable-user", "travis"], ["delete-user", "travis", "--yes"]):
        result = runner.invoke(args=args)
        assert_one_line_error(result, "last enabled administrator")
    assert tuple(row(database, "travis")) == (1, 1, 0)


def test_disable_user_ends_sessions_and_enable_user_allows_login(runner, client, database):
    register(client, "travis")
    headers = log_in(client).headers

    assert runner.invoke(args=["disable-user", "travis"]).exit_code == 0
    assert client.get("/users/me", headers=headers).status_code == 401
    assert post_login(client).status_code == 403

    assert runner.invoke(args=["enable-user", "travis"]).exit_code == 0
    assert client.get("/users/me", headers=headers).status_code == 401
    assert post_login(client).status_code == 200


def test_delete_user_asks_unless_yes(runner, client, database):
    register(client, "travis")

    declined = runner.invoke(args=["delete-user", "travis"], input="n\n")
    assert declined.exit_code != 0 and row(database, "travis") is not None

    confirmed = runner.invoke(args=["delete-user", "travis"], input="y\n")
    assert confirmed.exit_code == 0 and row(database, "travis") is None


def test_delete_user_with_yes_does_not_ask(runner, client, database):
    register(client, "travis")

    result = runner.invoke(args=["delete-user", "travis", "--yes"])

    assert result.exit_code == 0 and "?" not in result.output
    assert row(database, "travis") is None


def test_revoke_sessions_ends_every_session(runner, client):
    register(client, "travis")
    first, second = log_in(client).headers, log_in(client).headers

    result = runner.invoke(args=["revoke-sessions", "travis"])

    assert result.exit_code == 0 and "2 session(s) of travis ended." in result.output
    assert client.get("/users/me", headers=first).status_code == 401
    assert client.get("/users/me", headers=second).status_code == 401


@pytest.mark.parametrize(
    "args",
    [["set-admin", "nobody", "--on"], ["disable-user", "nobody"], ["enable-user", "nobody"],
     ["delete-user", "nobody", "--yes"], ["revoke-sessions", "nobody"], ["set-password", "nobody"]],
)
def test_an_unknown_username_is_one_line_before_any_prompt(runner, client, args):
    result = runner.invoke(args=args, input=f"{PASSWORD}\n{PASSWORD}\n")

    assert_one_line_error(result, "'nobody'")
    assert "Password" not in result.output


def test_create_user_checks_the_username_before_asking_for_a_password(runner, client):
    register(client, "travis")

    result = runner.invoke(args=["create-user", "Travis"], input=f"{PASSWORD}\n{PASSWORD}\n")

    assert_one_line_error(result, "already taken")
    assert "Password" not in result.output


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param(f"short\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n", id="too-short-then-good"),
        pytest.param(f"{NEW_PASSWORD}\n{NEW_PASSWORD}x\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n", id="mistyped-then-good"),
    ],
)
def test_a_bad_password_is_asked_again(runner, client, answers):
    result = runner.invoke(args=["create-user", "alice"], input=answers)

    assert result.exit_code == 0, result.output
    assert result.output.count("Password") >= 2
    assert post_login(client, "alice", NEW_PASSWORD).status_code == 200


def test_input_ending_before_a_password_is_one_line(runner, client, database):
    result = runner.invoke(args=["create-user", "alice"], input="short\n")

    assert_one_line_error(result, "No password was set")
    assert row(database, "alice") is None
