"""The auth blueprint: log in, refresh, log out; the Bearer decorators."""
import functools
import re
import time

import jwt
from flask import Blueprint, current_app, g, jsonify, request

from . import accounts, audit, keys, security, sessions, throttle
from .db import get_db
from .errors import APIError, challenge, validation_error
from .exceptions import InvalidCredentials, InvalidRefreshToken
from .validation import FORM, is_text, read_body, required_text

bp = Blueprint("auth", __name__)

REFRESH_COOKIE = "refresh_token"
# A JWS in compact form: three base64url segments, unpadded (RFC 7515 section 2).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def invalid_token(detail="The access token is invalid."):
    return APIError(401, "invalid_token", detail, headers=challenge("invalid_token"))


def bearer_token():
    """The token of ``Authorization: Bearer <token>``; exactly one, strictly."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise APIError(
            401,
            "authentication_required",
            "This endpoint needs an access token: Authorization: Bearer <token>.",
            headers=challenge(),
        )
    return token.strip(" ")


def user_for_token(token):
    """``(user, claims)``: the user and live session a valid access token names, in one query.

    HTTP requests and sockets (realtime.py) check tokens with this one function.
    """
    if not isinstance(token, str) or not _COMPACT_JWS.fullmatch(token):
        raise invalid_token()
    try:
        claims = security.decode_access_token(token, current_app.config, keys.current())
    except jwt.ExpiredSignatureError:
        raise invalid_token("The access token has expired.") from None
    except jwt.InvalidTokenError:
        raise invalid_token() from None
    user = get_db().execute(
        """
        SELECT users.id, username, is_admin, disabled, users.created_at, last_login_at,
               sessions.id AS session_id
        FROM sessions JOIN users ON users.id = sessions.user_id
        WHERE sessions.id = ? AND users.id = ? AND revoked_at IS NULL AND expires_at > ? AND disabled = 0
        """,
        (int(claims["sid"]), int(claims["sub"]), int(time.time())),
    ).fetchone()
    if user is None:
        raise invalid_token("The access token's session has ended, or its user no longer exists.")
    return user, claims


def authenticated_user():
    return user_for_token(bearer_token())[0]


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


def token_response(user, session_id, refresh_token, refresh_expires_at):
    """The token response; in cookie mode the refresh token goes in a cookie instead."""
    config = current_app.config
    refresh_expires_in = max(refresh_expires_at - int(time.time()), 0)
    body = {
        "access_token": security.issue_access_token(user, session_id, config, keys.current()),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_TTL"],
        "refresh_expires_in": refresh_expires_in,
    }
    if not config["AUTH_COOKIE"]:
        body["refresh_token"] = refresh_token
    response = jsonify(body)
    if config["AUTH_COOKIE"]:
        response.set_cookie(
            REFRESH_COOKIE,
            refresh_token,
            max_age=refresh_expires_in,
            path="/auth",
            secure=config["COOKIE_SECURE"],
            httponly=True,
            samesite="Strict",
        )
    return response


def login_fields(body):
    """``username`` and ``password`` as the original server required them, or a 422."""
    errors = [required_text(body, "username", "Username"), required_text(body, "password", "Password")]
    if any(errors):
        raise validation_error([error for error in errors if error])
    return body["username"], body["password"]


def check_credentials(username, password):
    """The user row these credentials prove, counted by the throttle; else 401 (or 429).

    Unknown user and wrong password take the same time and get the same answer.
    """
    config, db, ip = current_app.config, get_db(), request.remote_addr
    user = accounts.find_by_username(db, username)
    user_id = user["id"] if user else None
    locks = throttle.count_attempt(
        db, username, ip, config["LOGIN_MAX_FAILURES"], config["LOGIN_LOCKOUT"], user_id
    )
    check = security.check_password(password, user["password_hash"] if user else None, config["BCRYPT_ROUNDS"])
    if not check.matched:
        audit.event("login_failed", user_id, locked_out=locks)
        raise InvalidCredentials()
    throttle.forgive(db, username, ip)
    if user["disabled"]:
        audit.event("login_refused_disabled", user_id)
        raise APIError(403, "account_disabled", "This account is disabled; ask an administrator.")
    if check.needs_rehash:
        accounts.rehash(db, user, password, config["BCRYPT_ROUNDS"])
    return user


@bp.before_request
def check_cookie_csrf():
    """Cookie mode: the routes that set or read the cookie answer only the app's own script.

    A browser sends the cookie, and stores one it is given, on a cross-site
    form post too: a custom header (which a cross-site form cannot add) and,
    when present, an allowed Origin prove the request comes from the app.
    """
    if current_app.config["AUTH_COOKIE"] and request.method != "OPTIONS" and not same_site_script():
        raise APIError(403, "csrf_failed", "In cookie mode this request needs X-Requested-With and an allowed Origin.")


def same_site_script():
    origin = request.headers.get("Origin")
    allowed = [o.lower() for o in current_app.config["CORS_ORIGINS"]]
    return "X-Requested-With" in request.headers and (origin is None or origin.lower() in allowed)


@bp.post("/auth")
def login():
    config, db = current_app.config, get_db()
    user = check_credentials(*login_fields(read_body(form_allowed=True)))
    sessions.prune(db)
    throttle.prune(db)
    try:
        session_id, refresh_token, expires_at = sessions.open_session(
            db, user, config["REFRESH_TOKEN_TTL"], request.user_agent.string, request.remote_addr,
            secret=config["JWT_SECRET"], max_sessions=config["MAX_SESSIONS_PER_USER"],
        )
    except InvalidCredentials:
        audit.event("login_failed", user["id"], reason="credentials_changed")
        raise
    accounts.record_login(db, user["id"])
    audit.event("login_succeeded", user["id"], session_id=session_id)
    if config["KOA_COMPAT"] and request.mimetype == FORM:
        return koa_token_response(user, session_id)
    return token_response(user, session_id, refresh_token, expires_at)


def koa_token_response(user, session_id):
    """The original Koa server's answer to a form login: the access token alone, as text."""
    access_token = security.issue_access_token(user, session_id, current_app.config, keys.current())
    return current_app.response_class(access_token, mimetype="text/plain")


def presented_refresh_token():
    """The refresh token from the body, or else (cookie mode) from the cookie."""
    token = read_body(form_allowed=True).get("refresh_token")
    if token is None and current_app.config["AUTH_COOKIE"]:
        token = request.cookies.get(REFRESH_COOKIE)
    if not isinstance(token, str) or not token or not is_text(token):
        raise InvalidRefreshToken()
    return token


@bp.post("/auth/refresh")
def refresh():
    db = get_db()
    session, refresh_token = sessions.rotate(db, presented_refresh_token(), keys.accepted_secrets(current_app.config))
    user = accounts.find_by_id(db, session["user_id"])
    if user is None:  # deleted since the rotation, with its sessions
        raise InvalidRefreshToken()
    return token_response(user, session["id"], refresh_token, session["expires_at"])


@bp.post("/auth/logout")
@token_required
def logout():
    sessions.revoke(get_db(), session_id=g.user["session_id"], reason="logged_out")
    audit.event("session_revoked", g.user["id"], session_id=g.user["session_id"], reason="logout")
    response = current_app.response_class(status=204)
    if current_app.config["AUTH_COOKIE"]:
        response.delete_cookie(REFRESH_COOKIE, path="/auth", secure=current_app.config["COOKIE_SECURE"],
                               httponly=True, samesite="Strict")
    return response
