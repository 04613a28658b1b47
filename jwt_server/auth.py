"""The auth blueprint: register, log in, who am I; the Bearer decorators; user CLI."""
import functools
import sqlite3

import click
import jwt
from flask import Blueprint, current_app, g, request

from . import security
from .db import get_db
from .errors import APIError, validation_error
from .validation import check_new_password, check_username, field_error, is_text, read_body

bp = Blueprint("auth", __name__, cli_group=None)

USER_COLUMNS = "id, username, is_admin, created_at"
_B64TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def user_json(user):
    return {
        "id": user["id"],
        "username": user["username"],
        "is_admin": bool(user["is_admin"]),
        "created_at": user["created_at"],
    }


def challenge(error=None):
    """The RFC 6750 WWW-Authenticate value, with ``error`` when there is one."""
    value = 'Bearer realm="jwt-server"'
    return {"WWW-Authenticate": f'{value}, error="{error}"' if error else value}


def invalid_token(detail="The access token is invalid."):
    return APIError(401, "invalid_token", detail, headers=challenge("invalid_token"))


def bearer_token():
    """The token of ``Authorization: Bearer <token>``; exactly one, strictly."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise APIError(
            401,
            "authentication_required",
            "This endpoint needs an access token: Authorization: Bearer <token>.",
            headers=challenge(),
        )
    token = token.strip(" ")
    if not token or not _B64TOKEN.issuperset(token) or "=" in token.rstrip("="):
        raise invalid_token()
    return token


def authenticated_user():
    """The user a valid Bearer token names, loaded from the database."""
    try:
        claims = security.decode_access_token(bearer_token(), current_app.config)
    except jwt.ExpiredSignatureError:
        raise invalid_token("The access token has expired.") from None
    except jwt.InvalidTokenError:
        raise invalid_token() from None
    user = get_db().execute(
        f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (int(claims["sub"]),)
    ).fetchone()
    if user is None:
        raise invalid_token("The access token's user no longer exists.")
    return user


def token_required(view):
    """Let the view run only for a valid Bearer token; the caller is on ``g.user``."""

    @functools.wraps(view)
    def wrapped_view(*args, **kwargs):
        g.user = authenticated_user()
        return view(*args, **kwargs)

    return wrapped_view


def admin_required(view):
    """token_required, and the user must be an administrator now, in the database."""

    @functools.wraps(view)
    def wrapped_view(*args, **kwargs):
        if not g.user["is_admin"]:
            raise APIError(
                403,
                "insufficient_scope",
                "This endpoint is for administrators.",
                headers=challenge("insufficient_scope"),
            )
        return view(*args, **kwargs)

    return token_required(wrapped_view)


def new_user_errors(username, password):
    errors = []
    if message := check_username(username):
        errors.append(field_error("username", message))
    if message := check_new_password(password):
        errors.append(field_error("password", message))
    return errors


def create_user(username, password, is_admin=False):
    """Insert a user (already validated); 409 if the name is taken in any case."""
    db = get_db()
    taken = APIError(409, "username_taken", "That username is already taken.")
    if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
        raise taken
    password_hash = security.hash_password(password, current_app.config["BCRYPT_ROUNDS"])
    try:
        return db.execute(
            f"INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, ?) RETURNING {USER_COLUMNS}",
            (username, password_hash, int(is_admin)),
        ).fetchone()
    except sqlite3.IntegrityError:
        raise taken from None


def find_user(username):
    """The user row with its hash, by username in any case; None if unknown."""
    if not is_text(username):
        return None
    return get_db().execute(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()


@bp.post("/users")
def register():
    if not current_app.config["ALLOW_REGISTRATION"]:
        raise APIError(403, "registration_disabled", "Registration is closed on this server.")
    body = read_body()
    errors = new_user_errors(body.get("username"), body.get("password"))
    if errors:
        raise validation_error(errors)
    return user_json(create_user(body["username"], body["password"])), 201


@bp.post("/auth")
def login():
    body = read_body(form_allowed=True)
    username, password = body.get("username"), body.get("password")
    errors = []
    if not isinstance(username, str) or not username:
        errors.append(field_error("username", "Username required."))
    if not isinstance(password, str) or not password:
        errors.append(field_error("password", "Password required."))
    if errors:
        raise validation_error(errors)

    rounds = current_app.config["BCRYPT_ROUNDS"]
    user = find_user(username)
    if not security.check_password(password, user["password_hash"] if user else None, rounds):
        raise APIError(
            401, "invalid_credentials", "Incorrect username and/or password.", headers=challenge()
        )
    if security.hash_cost(user["password_hash"]) != rounds:
        get_db().execute(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            (security.hash_password(password, rounds), user["id"]),
        )
    return {
        "access_token": security.issue_access_token(user, current_app.config),
        "token_type": "Bearer",
        "expires_in": current_app.config["ACCESS_TOKEN_TTL"],
    }


@bp.get("/users/me")
@token_required
def me():
    return user_json(g.user)


@bp.get("/users")
@admin_required
def list_users():
    rows = get_db().execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY id").fetchall()
    return [user_json(row) for row in rows]


def prompt_password():
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if message := check_new_password(password):
        raise click.ClickException(message)
    return password


@bp.cli.command("create-user")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def create_user_command(username, admin):
    """Create a user (asks for the password twice) and print its id."""
    if message := check_username(username):
        raise click.ClickException(message)
    try:
        user = create_user(username, prompt_password(), is_admin=admin)
    except APIError as error:
        raise click.ClickException(error.detail) from None
    click.echo(user["id"])


@bp.cli.command("set-password")
@click.argument("username")
def set_password_command(username):
    """Set a user's password (asks for it twice)."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"There is no user named {username!r}.")
    password_hash = security.hash_password(prompt_password(), current_app.config["BCRYPT_ROUNDS"])
    get_db().execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user["id"]))
    click.echo(f"Password of {user['username']} changed.")
