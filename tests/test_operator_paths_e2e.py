"""End to end: what the real gunicorn and ``flask --app wsgi`` print when they cannot proceed.

One line on standard error and a non-zero exit, never a traceback: for a
database whose usernames differ only by case, a database directory or file
the user cannot write, and a signing secret that another user (root) created.
Files are made unwritable for the command's user by running it as ``nobody``
when the tests run as root (root ignores file modes), and by modes otherwise.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jwt_server.db import migrate
from tests.helpers import PASSWORD, PROJECT_ROOT, SECRET, build_koa_database, clean_environment

pytestmark = pytest.mark.e2e

FLASK = Path(sys.executable).with_name("flask")
NOBODY = 65534
EXIT_TIMEOUT = 60


def as_other_user(command):
    """``command`` as a user that owns none of the test's files."""
    if os.geteuid() == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return command


def run(command, database, stdin=""):
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=clean_environment(DATABASE_URL=f"sqlite:///{database}", JWT_SECRET=SECRET, BCRYPT_ROUNDS="4"),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        start_new_session=True,  # no terminal: the password prompts read standard input
    )


def assert_one_line(result, *words):
    """The command failed and said why in one line: the last on standard error, after any prompts."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    prompts = [line for line in lines[:-1] if is_prompt(line)]
    assert lines[:-1] == prompts, result.stderr
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


def is_prompt(line):
    """A line of click's password prompts read without a terminal (getpass warns that it echoes)."""
    return line.startswith(("Password: ", "Repeat for confirmation: ", "Warning: Password input may be echoed.")) or (
        "GetPassWarning" in line or "fallback_getpass" in line
    )


@pytest.fixture
def shared_dir():
    """A directory other users can enter (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="jwt-server-test-"))
    directory.chmod(0o755)
    yield directory
    directory.chmod(0o755)
    shutil.rmtree(directory)


@pytest.fixture
def duplicate_usernames(tmp_path):
    return build_koa_database(tmp_path / "db.sqlite", [(1, "Bob", "first password"), (7, "bob", "second password")])


# A migration that cannot proceed


def test_gunicorn_with_several_workers_stops_with_one_line_naming_the_usernames(start_gunicorn, duplicate_usernames):
    server = start_gunicorn(workers=3, database=duplicate_usernames, wait=False)

    returncode = server.process.wait(timeout=EXIT_TIMEOUT)

    assert returncode != 0
    stderr = server.stderr()
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines() == [
        f"jwt-server: cannot upgrade {duplicate_usernames}: usernames 'Bob' (id 1) and 'bob' (id 7) differ "
        "only by case; rename one of each pair (UPDATE users SET username = 'new name' WHERE id = 7) "
        "and start again"
    ]


@pytest.mark.parametrize("command", [["routes"], ["create-user", "alice"], ["set-password", "bob"]])
def test_flask_commands_stop_with_one_line_naming_the_usernames(duplicate_usernames, command):
    result = run([str(FLASK), "--app", "wsgi", *command], duplicate_usernames, stdin=f"{PASSWORD}\n{PASSWORD}\n")

    assert_one_line(result, "'Bob' (id 1) and 'bob' (id 7) differ only by case", "start again")


# The command line without write access


def test_cli_in_a_directory_it_cannot_write_says_so_in_one_line(shared_dir):
    database = shared_dir / "db" / "db.sqlite"
    migrate(str(database))
    database.parent.chmod(0o555)

    result = run(as_other_user([str(FLASK), "--app", "wsgi", "create-user", "alice"]), database, f"{PASSWORD}\n" * 2)

    assert_one_line(result, str(database), "service's user")


def test_cli_on_a_database_file_it_cannot_write_says_so_in_one_line(shared_dir):
    database = shared_dir / "db" / "db.sqlite"
    migrate(str(database))
    if os.geteuid() == 0:
        os.chown(database.parent, NOBODY, NOBODY)
    database.chmod(0o444)

    result = run(as_other_user([str(FLASK), "--app", "wsgi", "create-user", "alice"]), database, f"{PASSWORD}\n" * 2)

    line = assert_one_line(result, str(database), "readonly")
    assert line.startswith("Error: ")
    database.chmod(0o644)
    assert run([str(FLASK), "--app", "wsgi", "routes"], database).returncode == 0


# A signing secret another user created


def test_a_secret_file_another_user_created_is_one_line_naming_it(shared_dir):
    secret_path = shared_dir / "jwt-secret"
    secret_path.write_text("a" * 64 + "\n")
    secret_path.chmod(0o600 if os.geteuid() == 0 else 0o000)
    read_secret = (
        "from pathlib import Path; from jwt_server.config import read_or_create_secret; "
        f"read_or_create_secret(Path({str(secret_path)!r}))"
    )

    result = run(as_other_user([sys.executable, "-c", read_secret]), shared_dir / "unused.sqlite")

    assert_one_line(result, str(secret_path), "Permission denied", "chown", "flask commands")
