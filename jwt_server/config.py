"""Read and validate the environment once, at start-up.

A bad value stops the process with one line that names the variable, instead
of a traceback at the first request that happens to need it.
"""
import os
import re
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_PATH = PROJECT_ROOT / "db" / "jwt-secret"
MIN_SECRET_BYTES = 32
TEN_YEARS = 10 * 365 * 24 * 3600

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


def load_config(environ):
    """Return the app's settings from ``environ``, or raise ConfigError.

    ``JWT_SECRET`` is None when unset: the factory then reads or creates
    ``db/jwt-secret`` (see read_or_create_secret).
    """
    settings = {
        "DATABASE": database_path(environ.get("DATABASE_URL", "sqlite:///db/db.sqlite")),
        "JWT_SECRET": jwt_secret(environ.get("JWT_SECRET")),
        "JWT_ISSUER": non_empty(environ, "JWT_ISSUER", "jwt-server"),
        "JWT_LEEWAY": read_int(environ, "JWT_LEEWAY", 0, low=0, high=3600),
        "ACCESS_TOKEN_TTL": read_int(environ, "ACCESS_TOKEN_TTL", 900, low=1, high=TEN_YEARS),
        "REFRESH_TOKEN_TTL": read_int(environ, "REFRESH_TOKEN_TTL", 2592000, low=1, high=TEN_YEARS),
        "BCRYPT_ROUNDS": read_int(environ, "BCRYPT_ROUNDS", 12, low=4, high=31),
        "CORS_ORIGINS": cors_origins(environ.get("CORS_ORIGINS", "*")),
        "ALLOW_REGISTRATION": read_bool(environ, "ALLOW_REGISTRATION", True),
        "AUTH_COOKIE": read_bool(environ, "AUTH_COOKIE", False),
        "COOKIE_SECURE": read_bool(environ, "COOKIE_SECURE", True),
        "LOGIN_MAX_FAILURES": read_int(environ, "LOGIN_MAX_FAILURES", 5, low=1, high=1000),
        "LOGIN_LOCKOUT": read_int(environ, "LOGIN_LOCKOUT", 60, low=1, high=86400),
        "TRUSTED_PROXIES": read_int(environ, "TRUSTED_PROXIES", 0, low=0, high=10),
    }
    if settings["AUTH_COOKIE"] and settings["CORS_ORIGINS"] == "*":
        raise ConfigError(
            "AUTH_COOKIE=true needs CORS_ORIGINS to list the app's origins: "
            "a credentialed cookie cannot be offered to every origin."
        )
    return settings


def read_int(environ, name, default, *, low, high):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", raw) or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {raw!r}.")
    return int(raw)


def read_bool(environ, name, default):
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false, not {raw!r}.")
    return raw in _TRUE


def non_empty(environ, name, default):
    value = environ.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} must not be empty.")
    return value


def database_path(url):
    """The SQLite file a ``sqlite:///path`` URL names; relative to the project root."""
    scheme, sep, path = url.partition(":///")
    if not sep or scheme != "sqlite":
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///db/db.sqlite or sqlite:////abs/path; "
            f"the scheme {scheme.split(':')[0]!r} is not supported."
        )
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError("DATABASE_URL must name a database file (sqlite:///db/db.sqlite).")
    return str(PROJECT_ROOT / path) if not os.path.isabs(path) else path


def jwt_secret(value):
    if value is None or value == "":
        return None
    if len(value.encode("utf-8", "surrogateescape")) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes; "
            "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


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

    Workers starting together must end up with one secret: each writes its
    candidate to a private temporary file, then ``os.link`` publishes it
    under the real name, which fails if another worker got there first. The
    file under the real name is therefore always complete when it appears.
    """
    if not path.exists():
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
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; delete it to generate a new one.")
    return secret
