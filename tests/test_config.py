"""Configuration: the environment is read and checked once, at start-up."""
import os
import re
import stat
import subprocess
import sys

import pytest

from jwt_server.config import ConfigError, load_config, read_or_create_secret
from tests.helpers import PROJECT_ROOT, at_once, clean_environment


def config_error(environ):
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ)
    return str(excinfo.value)


def test_defaults_when_nothing_is_set():
    settings = load_config({})
    assert settings["DATABASE"] == str(PROJECT_ROOT / "db" / "db.sqlite")
    assert settings["JWT_SECRET"] is None
    assert settings["JWT_ISSUER"] == "jwt-server"
    assert settings["JWT_LEEWAY"] == 0
    assert settings["ACCESS_TOKEN_TTL"] == 900
    assert settings["REFRESH_TOKEN_TTL"] == 2592000
    assert settings["BCRYPT_ROUNDS"] == 12
    assert settings["CORS_ORIGINS"] == "*"
    assert settings["ALLOW_REGISTRATION"] is True
    assert settings["AUTH_COOKIE"] is False
    assert settings["COOKIE_SECURE"] is True
    assert settings["LOGIN_MAX_FAILURES"] == 5
    assert settings["LOGIN_LOCKOUT"] == 60
    assert settings["TRUSTED_PROXIES"] == 0
    assert [str(network) for network in settings["METRICS_ALLOW"]] == ["127.0.0.1/32", "::1/128"]
    assert settings["KOA_COMPAT"] is False
    assert settings["JWT_ALGORITHM"] == "HS256"
    assert settings["JWT_AUDIENCE"] == ()
    assert settings["JWT_SECRET_PREVIOUS"] is None
    assert settings["JWKS_MAX_AGE"] == 300
    assert settings["SIGNING_KEY_ROTATION_DAYS"] == 0


def test_empty_values_mean_the_defaults():
    settings = load_config({"ACCESS_TOKEN_TTL": "", "BCRYPT_ROUNDS": " ", "JWT_SECRET": ""})
    assert settings["ACCESS_TOKEN_TTL"] == 900
    assert settings["BCRYPT_ROUNDS"] == 12
    assert settings["JWT_SECRET"] is None


def test_valid_values_are_read():
    settings = load_config(
        {
            "ACCESS_TOKEN_TTL": "60",
            "BCRYPT_ROUNDS": "10",
            "ALLOW_REGISTRATION": "false",
            "CORS_ORIGINS": "https://a.example.com, http://localhost:5173",
            "JWT_ISSUER": "auth.example.com",
        }
    )
    assert settings["ACCESS_TOKEN_TTL"] == 60
    assert settings["BCRYPT_ROUNDS"] == 10
    assert settings["ALLOW_REGISTRATION"] is False
    assert settings["CORS_ORIGINS"] == ["https://a.example.com", "http://localhost:5173"]
    assert settings["JWT_ISSUER"] == "auth.example.com"


def test_config_error_is_a_system_exit_carrying_its_message():
    with pytest.raises(SystemExit) as excinfo:
        load_config({"BCRYPT_ROUNDS": "3"})
    assert isinstance(excinfo.value, ConfigError)
    # A string code is what Python prints, alone, before exiting with status 1.
    assert isinstance(excinfo.value.code, str)
    assert "BCRYPT_ROUNDS" in excinfo.value.code


def test_jwt_secret_of_31_bytes_is_refused():
    assert "JWT_SECRET" in config_error({"JWT_SECRET": "x" * 31})


def test_jwt_secret_of_32_bytes_is_accepted():
    assert load_config({"JWT_SECRET": "x" * 32})["JWT_SECRET"] == "x" * 32


def test_jwt_secret_length_counts_bytes_not_characters():
    assert "JWT_SECRET" in config_error({"JWT_SECRET": "é" * 15 + "x"})  # 31 bytes
    assert load_config({"JWT_SECRET": "é" * 16})["JWT_SECRET"] == "é" * 16  # 32 bytes


def test_refused_secret_is_not_echoed_in_the_message():
    message = config_error({"JWT_SECRET": "hunter2-but-too-short"})
    assert "hunter2" not in message


@pytest.mark.parametrize("value", ["0", "-5", "15m", "abc", "1.5"])
def test_access_token_ttl_must_be_a_positive_whole_number(value):
    assert "ACCESS_TOKEN_TTL" in config_error({"ACCESS_TOKEN_TTL": value})


@pytest.mark.parametrize("value", ["3", "32", "-4", "twelve"])
def test_bcrypt_rounds_outside_4_to_31_is_refused(value):
    assert "BCRYPT_ROUNDS" in config_error({"BCRYPT_ROUNDS": value})


@pytest.mark.parametrize("value", ["4", "31"])
def test_bcrypt_rounds_at_the_bounds_is_accepted(value):
    assert load_config({"BCRYPT_ROUNDS": value})["BCRYPT_ROUNDS"] == int(value)


def test_database_url_of_another_scheme_is_refused_without_its_password():
    message = config_error({"DATABASE_URL": "mysql://u:pw@h/db"})
    assert "DATABASE_URL" in message
    assert "pw" not in message


def test_in_memory_database_url_is_refused():
    assert "DATABASE_URL" in config_error({"DATABASE_URL": "sqlite:///:memory:"})


def test_absolute_sqlite_path_is_kept_absolute():
    assert load_config({"DATABASE_URL": "sqlite:////tmp/x.sqlite"})["DATABASE"] == "/tmp/x.sqlite"


def test_relative_sqlite_path_is_relative_to_the_project_root():
    settings = load_config({"DATABASE_URL": "sqlite:///data/app.sqlite"})
    assert settings["DATABASE"] == str(PROJECT_ROOT / "data" / "app.sqlite")


@pytest.mark.parametrize(
    "value, algorithm", [("EdDSA", "EdDSA"), ("eddsa", "EdDSA"), ("es256", "ES256"), ("RS256", "RS256")]
)
def test_jwt_algorithm_is_read_whatever_its_case(value, algorithm):
    assert load_config({"JWT_ALGORITHM": value})["JWT_ALGORITHM"] == algorithm


@pytest.mark.parametrize("value", ["none", "HS512", "Ed25519", "ES256K", "RS256,EdDSA"])
def test_jwt_algorithm_outside_the_four_is_refused_naming_them(value):
    message = config_error({"JWT_ALGORITHM": value})
    assert "JWT_ALGORITHM" in message and "HS256, EdDSA, ES256, RS256" in message


def test_jwt_audience_is_a_comma_separated_list():
    assert load_config({"JWT_AUDIENCE": " pets-api, billing-api ,,"})["JWT_AUDIENCE"] == ("pets-api", "billing-api")


def test_jwt_secret_previous_of_31_bytes_is_refused_by_its_own_name():
    message = config_error({"JWT_SECRET_PREVIOUS": "x" * 31})
    assert "JWT_SECRET_PREVIOUS must be at least 32 bytes" in message


@pytest.mark.parametrize(
    "name, value", [("JWKS_MAX_AGE", "0"), ("JWKS_MAX_AGE", "5m"), ("SIGNING_KEY_ROTATION_DAYS", "-1")]
)
def test_key_timings_must_be_whole_numbers_in_range(name, value):
    assert name in config_error({name: value})


def test_allow_registration_must_be_true_or_false():
    assert "ALLOW_REGISTRATION" in config_error({"ALLOW_REGISTRATION": "maybe"})


def test_boolean_message_names_exactly_the_words_accepted():
    message = config_error({"KOA_COMPAT": "maybe"})
    named = set(re.findall(r"\b(true|false|1|0|yes|no|on|off)\b", message.split(", not ")[0]))
    assert named == {"true", "false", "1", "0", "yes", "no", "on", "off"}
    for word in named:
        for spelling in (word, word.upper()):
            assert load_config({"KOA_COMPAT": spelling})["KOA_COMPAT"] is (word in {"true", "1", "yes", "on"})


@pytest.mark.parametrize(
    "name, value",
    [
        ("JWT_LEEWAY", "-1"),
        ("REFRESH_TOKEN_TTL", "0"),
        ("JWT_ISSUER", "  "),
        ("CORS_ORIGINS", "https://a.example.com/path"),
        ("CORS_ORIGINS", "https://a.example.com,*"),
        ("AUTH_COOKIE", "sometimes"),
        ("METRICS_ALLOW", "localhost"),
        ("METRICS_ALLOW", "10.0.0.0/33"),
        ("METRICS_ALLOW", " , "),
        ("KOA_COMPAT", "enabled"),
    ],
)
def test_other_bad_values_name_their_variable(name, value):
    assert name in config_error({name: value})


def test_secret_file_is_created_private_with_256_bits(tmp_path):
    path = tmp_path / "db" / "jwt-secret"
    secret = read_or_create_secret(path)
    assert len(secret) >= 64
    int(secret, 16)  # hex
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["jwt-secret"]


def test_secret_file_is_reused_on_the_next_start(tmp_path):
    path = tmp_path / "jwt-secret"
    first = read_or_create_secret(path)
    assert read_or_create_secret(path) == first


def test_existing_secret_file_is_read_not_replaced(tmp_path):
    path = tmp_path / "jwt-secret"
    path.write_text("s" * 40 + "\n")
    assert read_or_create_secret(path) == "s" * 40


def test_short_secret_file_is_refused(tmp_path):
    path = tmp_path / "jwt-secret"
    path.write_text("too-short\n")
    with pytest.raises(ConfigError) as excinfo:
        read_or_create_secret(path)
    assert str(path) in str(excinfo.value)


def test_processes_starting_together_agree_on_one_secret(tmp_path):
    # A race is lost only some of the time: several rounds make a loss show.
    for round_number in range(20):
        path = tmp_path / f"db{round_number}" / "jwt-secret"
        secrets = at_once(8, read_or_create_secret, path)
        assert len(set(secrets)) == 1, f"round {round_number}: {secrets}"
        assert path.read_text().strip() == secrets[0]
        assert os.listdir(path.parent) == ["jwt-secret"]


def test_importing_wsgi_with_a_short_secret_exits_with_one_line(tmp_path):
    database = tmp_path / "app.sqlite"
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=PROJECT_ROOT,
        env=clean_environment(JWT_SECRET="short", DATABASE_URL=f"sqlite:///{database}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "JWT_SECRET" in lines[0]
    assert "Traceback" not in result.stderr
    assert not database.exists()


def test_storage_bounds_default_to_ten_thousand_pets_and_a_hundred_sessions():
    settings = load_config({})
    assert (settings["MAX_PETS_PER_USER"], settings["MAX_SESSIONS_PER_USER"]) == (10000, 100)
    settings = load_config({"MAX_PETS_PER_USER": "5", "MAX_SESSIONS_PER_USER": "2"})
    assert (settings["MAX_PETS_PER_USER"], settings["MAX_SESSIONS_PER_USER"]) == (5, 2)


@pytest.mark.parametrize("name", ["MAX_PETS_PER_USER", "MAX_SESSIONS_PER_USER"])
@pytest.mark.parametrize("raw", ["0", "-1", "lots"])
def test_a_storage_bound_below_one_refuses_to_start(name, raw):
    assert name in config_error({name: raw})
