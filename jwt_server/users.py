"""The users blueprint: register, the caller's account and sessions; user CLI."""
import click
from flask import Blueprint, current_app, g

from . import audit, security, sessions
from .auth import USER_COLUMNS, admin_required, find_user, token_required
from .db import IntegrityError, get_db, transaction
from .errors import APIError, validation_error
from .validation import MAX_ID, check_new_password, check_username, field_error, read_body, required_text

bp = Blueprint("users", __name__, cli_group=None)


def user_json(user):
    return {
        "id": user["id"],
        "username": user["username"],
        "is_admin": bool(user["is_admin"]),
        "created_at": user["created_at"],
    }


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
    except IntegrityError:
        raise taken from None


def check_own_password(password):
    """403 wrong_password unless ``password`` is the caller's (one bcrypt check)."""
    row = get_db().execute("SELECT password_hash FROM users WHERE id = ?", (g.user["id"],)).fetchone()
    if not security.check_password(password, row["password_hash"], current_app.config["BCRYPT_ROUNDS"]):
        raise APIError(403, "wrong_password", "The password is not correct.")


@bp.post("/users")
def register():
    if not current_app.config["ALLOW_REGISTRATION"]:
        raise APIError(403, "registration_disabled", "Registration is closed on this server.")
    body = read_body()
    errors = new_user_errors(body.get("username"), body.get("password"))
    if errors:
        raise validation_error(errors)
    user = create_user(body["username"], body["password"])
    audit.event("user_registered", user["id"])
    return user_json(user), 201


@bp.get("/users/me")
@token_required
def me():
    return user_json(g.user)


@bp.get("/users")
@admin_required
def list_users():
    rows = get_db().execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY id").fetchall()
    return [user_json(row) for row in rows]


@bp.put("/users/me/password")
@token_required
def change_password():
    body = read_body()
    errors = []
    if error := required_text(body, "current_password", "Current password"):
        errors.append(error)
    if message := check_new_password(body.get("new_password")):
        errors.append(field_error("new_password", message))
    if errors:
        raise validation_error(errors)
    check_own_password(body["current_password"])
    password_hash = security.hash_password(body["new_password"], current_app.config["BCRYPT_ROUNDS"])
    db = get_db()
    with transaction(db):
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, g.user["id"]))
        revoked = sessions.revoke(db, user_id=g.user["id"], keep=g.user["session_id"])
    audit.event("password_changed", g.user["id"], sessions_revoked=revoked)
    return "", 204


@bp.delete("/users/me")
@token_required
def delete_account():
    body = read_body()
    if error := required_text(body, "password", "Password"):
        raise validation_error([error])
    check_own_password(body["password"])
    # Pets, sessions and rotated tokens go with the user (ON DELETE CASCADE).
    get_db().execute("DELETE FROM users WHERE id = ?", (g.user["id"],))
    audit.event("account_deleted", g.user["id"])
    return "", 204


@bp.get("/users/me/sessions")
@token_required
def list_sessions():
    return [
        {
            "id": row["id"],
            "created_at": sessions.iso(row["created_at"]),
            "last_used_at": sessions.iso(row["last_used_at"]),
            "user_agent": row["user_agent"],
            "ip": row["ip"],
            "current": row["id"] == g.user["session_id"],
        }
        for row in sessions.live_sessions(get_db(), g.user["id"])
    ]


@bp.delete("/users/me/sessions/<int:session_id>")
@token_required
def revoke_session(session_id):
    if session_id > MAX_ID or not sessions.revoke(get_db(), session_id=session_id, user_id=g.user["id"]):
        raise APIError(404, "session_not_found", "You have no live session with this id.")
    audit.event("session_revoked", g.user["id"], session_id=session_id, reason="revoked")
    return "", 204


@bp.delete("/users/me/sessions")
@token_required
def revoke_all_sessions():
    revoked = sessions.revoke(get_db(), user_id=g.user["id"])
    audit.event("sessions_revoked", g.user["id"], count=revoked, reason="revoked_all")
    return "", 204


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
    audit.event("user_registered", user["id"], via="cli", admin=admin)
    click.echo(user["id"])


@bp.cli.command("set-password")
@click.argument("username")
def set_password_command(username):
    """Set a user's password (asks for it twice); the user's sessions end."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"There is no user named {username!r}.")
    password_hash = security.hash_password(prompt_password(), current_app.config["BCRYPT_ROUNDS"])
    db = get_db()
    with transaction(db):
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user["id"]))
        revoked = sessions.revoke(db, user_id=user["id"])
    audit.event("password_changed", user["id"], via="cli", sessions_revoked=revoked)
    click.echo(f"Password of {user['username']} changed.")
