"""Read and validate the environment once, at start-up.

A bad value stops the process with one line that names the variable, instead
of a traceback at the first request that happens to need it.
"""
from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_PATH = PROJECT_ROOT / "db" / "jwt-secret"
MIN_SECRET_BYTES = 32
# gunicorn.conf.py's threads per worker, and so the default PostgreSQL pool size.
WORKER_THREADS = 4
TEN_YEARS = 10 * 365 * 24 * 3600
ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")

_ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?",
    re.IGNORECASE,
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(SystemExit):
    """A configuration value the server cannot run with.

    It is a SystemExit so that, uncaught, Python prints just the message and
    exits with status 1, wherever the app is being built: gunicorn's master
    reading gunicorn.conf.py, ``flask --app wsgi``, or any other WSGI server.
    """

    def __init__(self, message):
        super().__init__(f"jwt-server: configuration error: {message}")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, how it is read, and where it goes.

    ``key`` is the app.config key it fills, or None for the variables that
    only gunicorn.conf.py reads (where to listen, how many workers).
    """

    name: str
    default: object
    parse: Callable[[str, str], object]
    key: str | None = None
    # A variable set to blank means its default, except where blank is a mistake.
    blank_allowed: bool = True


def integer(low, high):
    def parse(name, raw):
        if not re.fullmatch(r"[0-9]{1,12}", raw) or not low <= int(raw) <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {raw!r}.")
        return int(raw)

    return parse


def boolean(name, raw):
    if raw.lower() not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false (or 1/0, yes/no, on/off), not {raw!r}.")
    return raw.lower() in _TRUE


def networks(name, raw):
    """Comma-separated addresses or networks (``127.0.0.1,::1,10.0.0.0/8``)."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    try:
        if items:
            return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError:
        pass
    raise ConfigError(
        f"{name} must be comma-separated addresses or networks such as 127.0.0.1,10.0.0.0/8, not {raw!r}."
    )


def text(name, raw):
    return raw


def bind_address(name, raw):
    """``host:port``, ``[v6]:port`` or ``unix:/path``, as gunicorn takes it."""
    if raw.startswith("unix:") and len(raw) > len("unix:"):
        return raw
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port or unix:/path, not {raw!r}.")
    return raw


# Every variable the server reads, in the order the README's table lists them.
SETTINGS = (
    Setting("DATABASE_URL", "sqlite:///db/db.sqlite", lambda name, raw: database(raw), "DATABASE"),
    Setting("JWT_SECRET", None, lambda name, raw: jwt_secret(raw), "JWT_SECRET"),
    Setting("JWT_ISSUER", "jwt-server", text, "JWT_ISSUER", blank_allowed=False),
    Setting("JWT_LEEWAY", 0, integer(0, 3600), "JWT_LEEWAY"),
    Setting("ACCESS_TOKEN_TTL", 900, integer(1, TEN_YEARS), "ACCESS_TOKEN_TTL"),
    Setting("JWT_ALGORITHM", "HS256", lambda name, raw: algorithm(raw), "JWT_ALGORITHM"),
    Setting("JWT_AUDIENCE", "", lambda name, raw: audiences(raw), "JWT_AUDIENCE"),
    Setting("JWT_SECRET_PREVIOUS", None, lambda name, raw: jwt_secret(raw, name), "JWT_SECRET_PREVIOUS"),
    Setting("JWKS_MAX_AGE", 300, integer(1, 7 * 86400), "JWKS_MAX_AGE"),
    Setting("SIGNING_KEY_ROTATION_DAYS", 0, integer(0, 3650), "SIGNING_KEY_ROTATION_DAYS"),
    Setting("REFRESH_TOKEN_TTL", 2592000, integer(1, TEN_YEARS), "REFRESH_TOKEN_TTL"),
    Setting("BCRYPT_ROUNDS", 12, integer(4, 31), "BCRYPT_ROUNDS"),
    Setting("CORS_ORIGINS", "*", lambda name, raw: cors_origins(raw), "CORS_ORIGINS"),
    Setting("ALLOW_REGISTRATION", True, boolean, "ALLOW_REGISTRATION"),
    Setting("AUTH_COOKIE", False, boolean, "AUTH_COOKIE"),
    Setting("COOKIE_SECURE", True, boolean, "COOKIE_SECURE"),
    Setting("LOGIN_MAX_FAILURES", 5, integer(1, 1000), "LOGIN_MAX_FAILURES"),
    Setting("LOGIN_LOCKOUT", 60, integer(1, 86400), "LOGIN_LOCKOUT"),
    Setting("TRUSTED_PROXIES", 0, integer(0, 10), "TRUSTED_PROXIES"),
    Setting("DATABASE_POOL_SIZE", WORKER_THREADS, integer(1, 100), "DATABASE_POOL_SIZE"),
    Setting("METRICS_ALLOW", "127.0.0.1,::1", networks, "METRICS_ALLOW"),
    Setting("KOA_COMPAT", False, boolean, "KOA_COMPAT"),
    Setting("MAX_PETS_PER_USER", 10000, integer(1, 10**9), "MAX_PETS_PER_USER"),
    Setting("MAX_SESSIONS_PER_USER", 100, integer(1, 10**6), "MAX_SESSIONS_PER_USER"),
    Setting("REALTIME_REPLAY_SECONDS", 300, integer(0, 7 * 24 * 3600), "REALTIME_REPLAY_SECONDS"),
    # Read by gunicorn.conf.py only.
    Setting("PORT", 8000, integer(1, 65535)),
    Setting("BIND", None, bind_address),
    Setting("WEB_CONCURRENCY", None, integer(1, 64)),
    Setting("FORWARDED_ALLOW_IPS", "127.0.0.1,::1", text),
)
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
# What a test or the bench clears to start a server from a known state.
ENVIRONMENT_VARIABLES = frozenset(SETTINGS_BY_NAME) | {"GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR"}


def read(environ, name):
    """The value of one setting in ``environ``: its default when unset or blank."""
    setting = SETTINGS_BY_NAME[name]
    raw = environ.get(name, "").strip()
    if not raw:
        if name in environ and not setting.blank_allowed:
            raise ConfigError(f"{name} must not be empty.")
        raw = setting.default
        if not isinstance(raw, str):
            return raw
    return setting.parse(name, raw)


def load_config(environ):
    """Return the app's settings from ``environ``, or raise ConfigError.

    ``JWT_SECRET`` is None when unset: the factory then reads or creates
    ``db/jwt-secret`` (see read_or_create_secret). The variables only
    gunicorn reads (BIND, ...) are checked too, so that gunicorn.conf.py
    stops on any bad value before it creates the database.
    """
    values = {setting: read(environ, setting.name) for setting in SETTINGS}
    settings = {setting.key: value for setting, value in values.items() if setting.key}
    if is_postgres_url(settings["DATABASE"]) and not settings["JWT_SECRET"]:
        raise ConfigError(
            "JWT_SECRET must be set with a PostgreSQL DATABASE_URL: every host must sign with the same secret."
        )
    if settings["AUTH_COOKIE"] and settings["CORS_ORIGINS"] == "*":
        raise ConfigError(
            "AUTH_COOKIE=true needs CORS_ORIGINS to list the app's origins: "
            "a credentialed cookie cannot be offered to every origin."
        )
    return settings


def is_postgres_url(url):
    return url.startswith(("postgresql://", "postgres://"))


def database(url):
    """A SQLite file's path, or a PostgreSQL URL as given (libpq reads it)."""
    return postgres_url(url) if is_postgres_url(url) else database_path(url)


def postgres_url(url):
    """``url`` if libpq can read it; the error names it without its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        port = conninfo_to_dict(url).get("port", "5432")
        if not all(re.fullmatch(r"[0-9]{1,5}", each) and 0 < int(each) < 65536 for each in port.split(",")):
            raise ValueError(f"the port {port!r} is not a number from 1 to 65535")
    except Exception as error:  # libpq's parse error, whatever its class, or the port
        reason = " ".join(str(error).split())
        raise ConfigError(
            f"DATABASE_URL {redact(url, url)!r} is not a PostgreSQL URL libpq can read "
            f"(postgresql://user:password@host:5432/dbname): {redact(reason, url)}"
        ) from None
    return url


def redact(message, url):
    """``message`` with every password in ``url`` (``user:password@``, ``password=``) as ***."""
    passwords = re.findall(r"^[a-z]+://[^:@/?]*:([^@/?]+)@|[?&]password=([^&]+)", url)
    for password in filter(None, sum(passwords, ())):
        message = message.replace(password, "***")
    return message


def database_path(url):
    """The SQLite file a ``sqlite:///path`` URL names; relative to the project root."""
    scheme, sep, path = url.partition(":///")
    if not sep or scheme != "sqlite":
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///db/db.sqlite, sqlite:////abs/path or "
            f"postgresql://user:password@host:5432/dbname; "
            f"the scheme {scheme.split(':')[0]!r} is not supported."
        )
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError("DATABASE_URL must name a database file (sqlite:///db/db.sqlite).")
    return str(PROJECT_ROOT / path) if not os.path.isabs(path) else path


def jwt_secret(value, name="JWT_SECRET"):
    if value is None or value == "":
        return None
    if len(value.encode("utf-8", "surrogateescape")) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes; "
            "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def algorithm(value):
    """One of ALGORITHMS, whatever its case (``eddsa`` is ``EdDSA``)."""
    by_lower_case = {name.lower(): name for name in ALGORITHMS}
    if value.lower() not in by_lower_case:
        raise ConfigError(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}, not {value!r}.")
    return by_lower_case[value.lower()]


def audiences(value):
    """The comma-separated audiences as a tuple; empty when unset (``aud`` is then not checked)."""
    return tuple(audience.strip() for audience in value.split(",") if audience.strip())


def cors_origins(value):
    """``*`` or a list of exact origins (``scheme://host[:port]``, no path)."""
    origins = [origin.strip() for origin in value.split(",") if origin.strip()]
    if origins == ["*"]:
        return "*"
    for origin in origins:
        if origin == "*" or not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"CORS_ORIGINS must be * alone or a comma-separated list of origins "
                f"such as https://app.example.com (no path, no wildcard), not {origin!r}."
            )
    if not origins:
        raise ConfigError("CORS_ORIGINS must not be empty; use * to allow every origin.")
    return origins


def read_or_create_secret(path=SECRET_PATH):
    """The signing secret kept in ``path``, generated (256 bits) on first use.

    A file this process cannot read or create is one line naming it: the
    usual cause is a command run as root that created it for root alone.
    """
    try:
        if not path.exists():
            create_secret(path)
        secret = path.read_text().strip()
    except OSError as error:
        raise ConfigError(
            f"cannot read or create {path} ({error.strerror}). It and its directory must belong to the "
            f"user the server runs as (chown <that user> {path}), and flask commands must run as that "
            "user too; or set JWT_SECRET."
        ) from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; delete it to generate a new one."
        )
    return secret


def create_secret(path):
    """Write a new secret to ``path`` unless another process gets there first.

    Workers starting together must end up with one secret: each writes its
    candidate to a private temporary file, then ``os.link`` publishes it
    under the real name, which fails if another worker got there first. The
    file under the real name is therefore always complete when it appears.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(candidate)
