"""The files an operator installs from deploy/: the environment file and the CLI wrapper.

The wrapper tests run it as root (as an operator would, and as CI does) and
check that the command it starts runs as the service user.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from jwt_server.config import SETTINGS, ConfigError, load_config
from tests.helpers import PASSWORD, PROJECT_ROOT, clean_environment

ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "jwt-server.env.example"
CLI = PROJECT_ROOT / "deploy" / "jwt-server-cli"
SERVICE_USER = "nobody"  # stands for jwt-server, which this machine need not have
# What a command started by the wrapper reports: who, where, with what.
FAKE_FLASK = """#!/bin/sh
echo "uid=$(id -u) cwd=$(pwd) umask=$(umask) DATABASE_URL=$DATABASE_URL args=$*"
touch db/created-by-the-command
"""


def example_settings():
    """The NAME=value lines of the example, in order."""
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_env_example_sets_every_variable_once():
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = [line.split("=", 1)[0] for line in lines]

    assert sorted(names) == sorted(setting.name for setting in SETTINGS)


def test_env_example_refuses_to_start_until_the_secret_is_replaced():
    with pytest.raises(ConfigError) as refused:
        load_config(example_settings())
    assert "JWT_SECRET" in str(refused.value)


def test_env_example_with_a_secret_holds_production_values():
    settings = load_config({**example_settings(), "JWT_SECRET": "ab" * 32})

    assert settings["TRUSTED_PROXIES"] == 1
    assert settings["CORS_ORIGINS"] != "*"
    assert settings["COOKIE_SECURE"] is True
    assert settings["KOA_COMPAT"] is False
    assert settings["DATABASE"] == str(PROJECT_ROOT / "db" / "db.sqlite")


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.fail("the wrapper runs as root; run this test as root, as CI does")


@pytest.fixture
def fake_project(root):
    """deploy/jwt-server-cli in a project whose .venv/bin/flask only reports how it was run."""
    project = Path(tempfile.mkdtemp(prefix="jwt-server-cli-"))
    try:
        project.chmod(0o755)
        (project / "deploy").mkdir()
        shutil.copy(CLI, project / "deploy" / "jwt-server-cli")
        (project / ".venv" / "bin").mkdir(parents=True)
        (project / ".venv" / "bin" / "flask").write_text(FAKE_FLASK)
        (project / ".venv" / "bin" / "flask").chmod(0o755)
        (project / "db").mkdir()
        service_user = pwd.getpwnam(SERVICE_USER)
        os.chown(project / "db", service_user.pw_uid, service_user.pw_gid)
        (project / "env").write_text("# comment\nDATABASE_URL=sqlite:///db/db.sqlite\nCORS_ORIGINS=https://a.example,https://b.example\n")
        (project / "env").chmod(0o600)
        yield project
    finally:
        shutil.rmtree(project)


def run_cli(cli, *arguments, user=SERVICE_USER, env_file, run_as=None, stdin=""):
    command = [str(cli), *arguments]
    if run_as:
        command = ["runuser", "-u", run_as, "--", *command]
    return subprocess.run(
        command,
        env=clean_environment(JWT_SERVER_USER=user, JWT_SERVER_ENV_FILE=str(env_file)),
        input=stdin, capture_output=True, text=True, timeout=60, start_new_session=True,
    )


def test_cli_runs_the_command_as_the_service_user_with_the_env_file(fake_project):
    result = run_cli(fake_project / "deploy" / "jwt-server-cli", "create-user", "alice", "--admin",
                     env_file=fake_project / "env")

    assert result.returncode == 0, result.stderr
    service_user = pwd.getpwnam(SERVICE_USER)
    assert result.stdout.split() == [
        f"uid={service_user.pw_uid}", f"cwd={fake_project}", "umask=0077",
        "DATABASE_URL=sqlite:///db/db.sqlite", "args=--app", "wsgi", "create-user", "alice", "--admin",
    ]
    created = (fake_project / "db" / "created-by-the-command").stat()
    assert (created.st_uid, created.st_mode & 0o777) == (service_user.pw_uid, 0o600)


@pytest.mark.parametrize(
    "problem, expected",
    [("not root", "run it as root"), ("no env file", "is missing"), ("no such user", "there is no user")],
)
def test_cli_refuses_with_one_line(fake_project, problem, expected):
    cli, env_file, user, run_as = fake_project / "deploy" / "jwt-server-cli", fake_project / "env", SERVICE_USER, None
    if problem == "not root":
        run_as = SERVICE_USER
    elif problem == "no env file":
        env_file = fake_project / "missing"
    else:
        user = "no-such-user-here"

    result = run_cli(cli, "list-users", user=user, env_file=env_file, run_as=run_as)

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr, result.stderr
    assert result.stdout == ""
    assert not (fake_project / "db" / "created-by-the-command").exists()


def test_cli_runs_the_real_flask_commands(root, tmp_path):
    """The wrapper in this checkout, with its .venv: create-user on a database the env file names."""
    database = tmp_path / "cli.sqlite"
    env_file = tmp_path / "env"
    env_file.write_text(f"DATABASE_URL=sqlite:///{database}\nJWT_SECRET={'s' * 40}\nBCRYPT_ROUNDS=4\n")

    # This checkout's interpreter may live where only root can read it: run as root here.
    created = run_cli(CLI, "create-user", "alice", "--admin", user="root", env_file=env_file,
                      stdin=f"{PASSWORD}\n{PASSWORD}\n")

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1] == "1"
    assert database.exists()


def make_commands(target):
    """What ``make TARGET`` would run on a fresh checkout (-B: as if nothing were installed)."""
    result = subprocess.run(["make", "-n", "-B", target], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


def test_make_run_installs_the_service_without_the_test_extras():
    assert make_commands("run") == [".venv/bin/python -m pip install --quiet -e ."]


def test_make_test_adds_the_test_extras():
    assert make_commands("test")[-1] == ".venv/bin/python -m pip install --quiet -e '.[test]'"
