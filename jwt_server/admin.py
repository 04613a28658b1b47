"""Administration: list, promote, demote, disable, enable and delete users.

The routes need an administrator's token; the same operations are on the
command line for when no administrator can log in. Either way the last
enabled administrator cannot be demoted, disabled or deleted, and each
change is an audit event naming who made it.
"""
import click
from flask import Blueprint, g

from . import accounts, audit, sessions
from .auth import admin_required
from .db import MAX_ID, get_db
from .errors import validation_error
from .exceptions import DomainError, UserNotFound
from .validation import field_error, read_body

bp = Blueprint("admin", __name__, cli_group=None)

FLAGS = ("is_admin", "disabled")


def target_id(user_id):
    if user_id > MAX_ID:
        raise UserNotFound(user_id)
    return user_id


def flag_changes(body):
    """``{"is_admin": bool, "disabled": bool}``, either or both, or a 422."""
    errors = [field_error(name, f"{name} must be true or false.") for name in FLAGS
              if name in body and not isinstance(body[name], bool)]
    errors += [field_error(name, f"{name} cannot be changed here.") for name in body if name not in FLAGS]
    if not errors and not any(name in body for name in FLAGS):
        errors.append(field_error("is_admin", "Give is_admin, disabled, or both."))
    if errors:
        raise validation_error(errors)
    return {name: body[name] for name in FLAGS if name in body}


def audit_changes(before, changes, **by):
    if "is_admin" in changes and bool(before["is_admin"]) != changes["is_admin"]:
        audit.event("user_promoted" if changes["is_admin"] else "user_demoted", before["id"], **by)
    if "disabled" in changes and bool(before["disabled"]) != changes["disabled"]:
        audit.event("user_disabled" if changes["disabled"] else "user_enabled", before["id"], **by)


@bp.get("/users")
@admin_required
def list_users():
    return [accounts.public(row) for row in accounts.list_all(get_db())]


@bp.patch("/users/<int:user_id>")
@admin_required
def update_user(user_id):
    changes = flag_changes(read_body())
    db = get_db()
    before = accounts.administer(db, target_id(user_id), **changes)
    audit_changes(before, changes, admin_id=g.user["id"])
    return accounts.public(accounts.find_by_id(db, user_id))


@bp.delete("/users/<int:user_id>")
@admin_required
def delete_user(user_id):
    accounts.administer(get_db(), target_id(user_id), delete_user=True)
    audit.event("account_deleted", user_id, admin_id=g.user["id"])
    return "", 204


@bp.delete("/users/<int:user_id>/sessions")
@admin_required
def revoke_user_sessions(user_id):
    db = get_db()
    if accounts.find_by_id(db, target_id(user_id)) is None:
        raise UserNotFound(user_id)
    revoked = sessions.revoke(db, user_id=user_id)
    audit.event("sessions_revoked", user_id, admin_id=g.user["id"], count=revoked, reason="admin")
    return "", 204


# The same on the command line: flask --app wsgi <command> USERNAME


def existing_user(username):
    user = accounts.find_by_username(get_db(), username)
    if user is None:
        raise click.ClickException(f"There is no user named {username!r}.")
    return user


def administer_from_cli(user, **changes):
    try:
        accounts.administer(get_db(), user["id"], **changes)
    except DomainError:
        raise click.ClickException(
            f"{user['username']} is the last enabled administrator; promote another user first."
        ) from None


@bp.cli.command("list-users")
def list_users_command():
    """List every user: id, username, admin, disabled, created, last login."""
    for user in accounts.list_all(get_db()):
        flags = [name for name, on in (("admin", user["is_admin"]), ("disabled", user["disabled"])) if on]
        click.echo(
            f"{user['id']}\t{user['username']}\t{','.join(flags) or '-'}\t"
            f"created {user['created_at']}\tlast login {user['last_login_at'] or 'never'}"
        )


@bp.cli.command("set-admin")
@click.argument("username")
@click.option("--on/--off", "is_admin", required=True, help="Make the user an administrator, or not.")
def set_admin_command(username, is_admin):
    """Promote (--on) or demote (--off) a user."""
    user = existing_user(username)
    administer_from_cli(user, is_admin=is_admin)
    audit_changes(user, {"is_admin": is_admin}, via="cli")
    click.echo(f"{user['username']} is {'now' if is_admin else 'no longer'} an administrator.")


@bp.cli.command("disable-user")
@click.argument("username")
def disable_user_command(username):
    """Disable a user: no login, every session ends."""
    user = existing_user(username)
    administer_from_cli(user, disabled=True)
    audit_changes(user, {"disabled": True}, via="cli")
    click.echo(f"{user['username']} is disabled; their sessions have ended.")


@bp.cli.command("enable-user")
@click.argument("username")
def enable_user_command(username):
    """Enable a disabled user again (their old sessions stay ended)."""
    user = existing_user(username)
    administer_from_cli(user, disabled=False)
    audit_changes(user, {"disabled": False}, via="cli")
    click.echo(f"{user['username']} is enabled.")


@bp.cli.command("delete-user")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user_command(username, yes):
    """Delete a user with their pets and sessions."""
    user = existing_user(username)
    if not yes:
        click.confirm(f"Delete {user['username']} with their pets and sessions?", abort=True)
    administer_from_cli(user, delete_user=True)
    audit.event("account_deleted", user["id"], via="cli")
    click.echo(f"{user['username']} is deleted.")


@bp.cli.command("revoke-sessions")
@click.argument("username")
def revoke_sessions_command(username):
    """End every session of a user."""
    user = existing_user(username)
    revoked = sessions.revoke(get_db(), user_id=user["id"])
    audit.event("sessions_revoked", user["id"], via="cli", count=revoked, reason="admin")
    click.echo(f"{revoked} session(s) of {user['username']} ended.")
