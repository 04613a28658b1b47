"""The users blueprint: register, the caller's account and sessions; user CLI."""
import click
from flask import Blueprint, current_app, g, request

from . import accounts, audit, security, sessions, throttle
from .auth import token_required
from .db import MAX_ID, get_db
from .errors import APIError, validation_error
from .exceptions import AccountGone, InvalidCredentials, UsernameTaken
from .validation import (
    check_new_password,
    check_username,
    field_error,
    read_body,
    required_text,
)

bp = Blueprint("users", __name__, cli_group=None)


def new_user_errors(username, password):
    errors = []
    if message := check_username(username):
        errors.append(field_error("username", message))
    if message := check_new_password(password):
        errors.append(field_error("password", message))
    return errors


def wrong_password():
    return APIError(403, "wrong_password", "The password is not correct.")


def check_own_password(password, action):
    """The caller's user row if ``password`` is theirs, else 403 wrong_password.

    Counted by the login throttle like a login for the caller's username from
    this address (429 once locked out), so that a stolen access token cannot
    be used to guess the password without limit; each wrong guess is audited.
    """
    config, db, ip = current_app.config, get_db(), request.remote_addr
    locks = throttle.count_attempt(
        db, g.user["username"], ip, config["LOGIN_MAX_FAILURES"], config["LOGIN_LOCKOUT"], g.user["id"]
    )
    user = accounts.find_by_id(db, g.user["id"])
    if user is None:
        raise AccountGone()
    if not security.check_password(password, user["password_hash"], config["BCRYPT_ROUNDS"]).matched:
        audit.event("wrong_password", g.user["id"], action=action, locked_out=locks)
        raise wrong_password()
    throttle.forgive(db, g.user["username"], ip)
    return user


@bp.post("/users")
def register():
    if not current_app.config["ALLOW_REGISTRATION"]:
        raise APIError(403, "registration_disabled", "Registration is closed on this server.")
    body = read_body()
    errors = new_user_errors(body.get("username"), body.get("password"))
    if errors:
        raise validation_error(errors)
    user = accounts.create(get_db(), body["username"], body["password"], current_app.config["BCRYPT_ROUNDS"])
    audit.event("user_registered", user["id"])
    return accounts.public(user), 201


@bp.get("/users/me")
@token_required
def me():
    return accounts.public(g.user)


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
    user = check_own_password(body["current_password"], "change_password")
    try:
        revoked = accounts.set_password(
            get_db(), user["id"], body["new_password"], current_app.config["BCRYPT_ROUNDS"], g.user["session_id"], user
        )
    except InvalidCredentials:  # changed by someone else since it was checked
        raise wrong_password() from None
    audit.event("password_changed", g.user["id"], sessions_revoked=revoked)
    return "", 204


@bp.delete("/users/me")
@token_required
def delete_account():
    body = read_body()
    if error := required_text(body, "password", "Password"):
        raise validation_error([error])
    check_own_password(body["password"], "delete_account")
    accounts.delete(get_db(), g.user["id"])
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


def acceptable_password(value):
    if message := check_new_password(value):
        raise click.UsageError(message)
    return value


def prompt_password():
    """Ask twice; a password too short or mistyped is asked for again."""
    try:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True, value_proc=acceptable_password)
    except click.Abort:
        raise click.ClickException("No password was set: the input ended before one was confirmed.") from None


@bp.cli.command("create-user")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def create_user_command(username, admin):
    """Create a user (asks for the password twice) and print its id."""
    if message := check_username(username):
        raise click.ClickException(message)
    if accounts.find_by_username(get_db(), username) is not None:
        raise click.ClickException("That username is already taken.")
    try:
        user = accounts.create(get_db(), username, prompt_password(), current_app.config["BCRYPT_ROUNDS"], admin)
    except UsernameTaken:
        raise click.ClickException("That username is already taken.") from None
    audit.event("user_registered", user["id"], via="cli", admin=admin)
    click.echo(user["id"])


@bp.cli.command("set-password")
@click.argument("username")
def set_password_command(username):
    """Set a user's password (asks for it twice); the user's sessions end."""
    db = get_db()
    user = accounts.find_by_username(db, username)
    if user is None:
        raise click.ClickException(f"There is no user named {username!r}.")
    try:
        revoked = accounts.set_password(db, user["id"], prompt_password(), current_app.config["BCRYPT_ROUNDS"])
    except AccountGone:
        raise click.ClickException(f"The user {username!r} was deleted meanwhile.") from None
    audit.event("password_changed", user["id"], via="cli", sessions_revoked=revoked)
    click.echo(f"Password of {user['username']} changed.")
