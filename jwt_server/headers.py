"""Headers every response carries: a request id, nosniff, no-store."""
import itertools
import os
import re
import secrets

from flask import g, request

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestIds:
    """Unique ids without a system call each: a random prefix per process, then a counter.

    Request ids must be unique, not unguessable. A forked worker draws a new
    prefix (os.register_at_fork), so workers never share one.
    """

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self):
        self.prefix, self.counter = secrets.token_hex(8), itertools.count()

    def new(self):
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = RequestIds().new


def request_id():
    """This request's id: the client's X-Request-ID when it is safe to log, else a new one."""
    if "request_id" not in g:
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if _CLIENT_REQUEST_ID.fullmatch(incoming) else new_request_id()
    return g.request_id


def init_app(app):
    vary_on_origin = app.config["CORS_ORIGINS"] != "*"

    @app.after_request
    def add_headers(response):
        headers = response.headers
        headers["X-Request-ID"] = request_id()
        headers["X-Content-Type-Options"] = "nosniff"
        # Every answer is a token, a user's data or an error about them: never cache.
        headers.setdefault("Cache-Control", "no-store")
        # With a list of origins the CORS headers depend on Origin, even when absent.
        if vary_on_origin:
            response.vary.add("Origin")
        return response
