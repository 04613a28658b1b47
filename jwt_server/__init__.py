"""jwt-server: JWT authentication for single-page apps, on Flask and SQLite."""
import functools
import os
import re

from flask import Flask, request
from flask_cors import CORS
from flask_cors.core import get_cors_headers, get_cors_options
from werkzeug.datastructures import Headers
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (
    admin,
    audit,
    auth,
    config,
    db,
    errors,
    headers,
    keys,
    meta,
    pets,
    realtime,
    security,
    users,
    validation,
    wellknown,
)

MAX_BODY_BYTES = 64 * 1024


def create_app(overrides=None):
    """Build the app from the environment; ``overrides`` replaces any setting (tests)."""
    app = Flask(__name__)
    app.config.from_mapping(config.load_config(os.environ), MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    app.config.update(overrides or {})
    if not app.config["JWT_SECRET"]:
        app.config["JWT_SECRET"] = config.read_or_create_secret()

    db.init_app(app)
    keys.init_app(app)
    security.dummy_hash(app.config["BCRYPT_ROUNDS"])
    errors.init_app(app)
    audit.init_app(app)
    headers.init_app(app)
    # Before any route exists: rules take these when they are added.
    app.url_map.converters["int"] = validation.AsciiIntegerConverter
    app.url_map.merge_slashes = False  # /pets//1 is a 404, not a redirect that echoes Host
    app.register_blueprint(auth.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(pets.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(wellknown.bp)
    db.one_line_cli_errors(app)
    init_cors(app)
    realtime.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        # Believe X-Forwarded-* only from as many proxies as are really in front.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def init_cors(app):
    """flask-cors, with the CORS headers of actual responses worked out once per Origin.

    flask-cors's after-request hook works out every response's CORS headers
    anew, a sixth of a small request's time, even when there is no Origin.
    Apart from preflights they depend on the Origin alone, so flask-cors's
    own function computes them once for each Origin value (a bounded cache:
    a client can send any number of them). Preflights, and the private-network
    request header, still go through flask-cors's hook.
    """
    options = cors_options(app.config["CORS_ORIGINS"], app.config["AUTH_COOKIE"])
    CORS(app, **options)
    flask_cors_hook = app.after_request_funcs[None].pop()
    if flask_cors_hook.__name__ != "cors_after_request":
        raise RuntimeError(f"expected flask-cors's after-request hook, found {flask_cors_hook!r}")
    resolved = get_cors_options(app, options)

    @functools.lru_cache(maxsize=1024)
    def headers_for(origin):
        return list(get_cors_headers(resolved, Headers({"Origin": origin}), "GET").items(multi=True))

    @app.after_request
    def add_cors_headers(response):
        environ = request.environ
        if environ["REQUEST_METHOD"] == "OPTIONS" or "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK" in environ:
            return flask_cors_hook(response)
        origin = environ.get("HTTP_ORIGIN")
        if origin and "Access-Control-Allow-Origin" not in response.headers:
            response.headers.extend(headers_for(origin))
        return response


def cors_options(origins, credentials):
    """flask-cors settings: exact origins only, readable error bodies, cached preflights.

    Each origin is passed as an anchored, escaped pattern: flask-cors would
    otherwise read an origin with regex characters as an unanchored regex.
    """
    if origins != "*":
        origins = [re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins]
    return {
        "origins": origins,
        "send_wildcard": origins == "*",
        "always_send": False,
        "allow_headers": ["Authorization", "Content-Type", "X-Requested-With", "X-Request-ID"],
        "expose_headers": ["Location", "Link", "Retry-After", "WWW-Authenticate", "X-Request-ID"],
        "max_age": 600,
        # Cookie mode: the browser must send the refresh cookie cross-origin.
        "supports_credentials": credentials,
    }

