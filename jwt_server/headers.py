"""Headers every response carries: a request id, nosniff, no-store."""
import itertools
import os
import re
import secrets

from flask import g, request

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_process = {"pid": None, "prefix": "", "counter": itertools.count()}


def new_request_id():
    """A unique id: a random prefix per process, then a counter.

    Request ids must be unique, not unguessable, so this avoids asking the
    kernel for random bytes on every request. The prefix is made anew in each
    process, forked workers included.
    """
    if _process["pid"] != os.getpid():
        _process.update(pid=os.getpid(), prefix=secrets.token_hex(8), counter=itertools.count())
    return f"{_process['prefix']}{next(_process['counter']):016x}"


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
