"""Headers every response carries: a request id, nosniff, no-store."""
import re
import uuid

from flask import current_app, g, request

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def assign_request_id():
    """Keep the client's X-Request-ID when it is safe to log, else make one."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _CLIENT_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def add_headers(response):
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Every answer is a token, a user's data or an error about them: never cache.
    response.headers.setdefault("Cache-Control", "no-store")
    # With a list of origins the CORS headers depend on Origin, even when absent.
    if current_app.config["CORS_ORIGINS"] != "*":
        response.vary.add("Origin")
    return response


def init_app(app):
    app.before_request(assign_request_id)
    app.after_request(add_headers)
