"""Every error becomes an RFC 9457 problem document (application/problem+json).

Routes raise; one set of handlers, registered on the app so that they also
see the 404 and 405 raised by URL routing, builds every error response. The
data modules raise domain errors (exceptions.py) that know nothing of HTTP:
their status, code and sentence are given here.
"""
import json
import re
import sqlite3

import psycopg
from flask import current_app
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from . import db
from .exceptions import (
    AccountGone,
    DomainError,
    InvalidCredentials,
    InvalidRefreshToken,
    LastAdministrator,
    LockedOut,
    RefreshTokenReused,
    UsernameTaken,
    UserNotFound,
)
from .headers import request_id

# Stable codes for the errors Werkzeug raises; others get their name in snake_case.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_DETAILS = {
    404: "There is nothing at this URL.",
    405: "This URL does not support this method; the Allow header lists the ones it does.",
    413: "The request body is larger than the 64 KiB this server accepts.",
}


# Each domain error's problem: status, code, detail. A subclass without an
# entry of its own gets its parent's.
_DOMAIN_PROBLEMS = {
    UsernameTaken: (409, "username_taken", "That username is already taken."),
    UserNotFound: (404, "user_not_found", "There is no user with this id."),
    LastAdministrator: (
        409,
        "last_admin",
        "This would leave no enabled administrator; promote another user first.",
    ),
    InvalidRefreshToken: (
        401,
        "invalid_refresh_token",
        "The refresh token is invalid, expired or revoked; log in again.",
    ),
    RefreshTokenReused: (
        401,
        "refresh_token_reused",
        "This refresh token was already used: the session is revoked; log in again.",
    ),
    LockedOut: (
        429,
        "too_many_attempts",
        "Too many failed logins for this username from this address; try again later.",
    ),
    # Byte for byte the answer to a wrong password.
    InvalidCredentials: (401, "invalid_credentials", "Incorrect username and/or password."),
    AccountGone: (
        401,
        "invalid_token",
        "The access token's session has ended, or its user no longer exists.",
    ),
}
# The error= of WWW-Authenticate, for the 401s about a presented token.
_CHALLENGE_ERRORS = {AccountGone: "invalid_token"}


class APIError(Exception):
    """An error the client should see: HTTP status, stable code, a readable sentence."""

    def __init__(self, status, code, detail, *, errors=None, headers=None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def challenge(error=None):
    """The RFC 6750 WWW-Authenticate header of a 401 or 403, with ``error`` when there is one."""
    value = 'Bearer realm="jwt-server"'
    return {"WWW-Authenticate": f'{value}, error="{error}"' if error else value}


def validation_error(errors):
    """422 listing ``[{"field", "message"}]``; the detail repeats the first message."""
    return APIError(422, "validation_error", errors[0]["message"], errors=errors)


def problem(status, code, detail, *, errors=None, headers=None):
    document = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        document["errors"] = errors
    # A newline at the end, as Flask ends its JSON: a second curl then prints on a line of its own.
    response = current_app.response_class(
        json.dumps(document) + "\n", status=status, mimetype="application/problem+json"
    )
    response.headers.extend(headers or {})
    return response


def handle_api_error(error):
    return problem(error.status, error.code, error.detail, errors=error.errors, headers=error.headers)


def handle_domain_error(error):
    kind = next(kind for kind in type(error).__mro__ if kind in _DOMAIN_PROBLEMS)
    status, code, detail = _DOMAIN_PROBLEMS[kind]
    headers = challenge(_CHALLENGE_ERRORS.get(kind)) if status == 401 else {}
    if isinstance(error, LockedOut):
        headers["Retry-After"] = str(error.retry_after)
    return problem(status, code, detail, headers=headers)


def handle_http_exception(error):
    if error.code is None or error.code < 400:
        return error
    code = _HTTP_CODES.get(error.code) or re.sub(r"\W+", "_", error.name.lower()).strip("_")
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    detail = _DETAILS.get(error.code) or error.description or error.name
    return problem(error.code, code, detail, headers=headers)


def handle_database_error(error):
    """503 for what a retry can fix (the database unreachable, locked, full...); else a bug, 500."""
    if not db.is_transient(error):
        return handle_unexpected(error)
    current_app.logger.exception("database unavailable (request id %s)", request_id())
    return problem(
        503,
        "database_unavailable",
        "The database is unavailable right now; try again shortly.",
        headers={"Retry-After": "1"},
    )


def handle_unexpected(error):
    current_app.logger.exception("unexpected error (request id %s)", request_id())
    return problem(
        500,
        "internal_error",
        "Something went wrong on the server. The X-Request-ID header identifies it in the logs.",
    )


def init_app(app):
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(sqlite3.Error, handle_database_error)
    app.register_error_handler(psycopg.Error, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
