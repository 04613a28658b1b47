"""What verifiers discover: the JWKS and the authorization server metadata (RFC 8414).

Both are public and cacheable for ``JWKS_MAX_AGE`` seconds: a rotation waits
that long before a new key signs, so a verifier that caches them no longer
than that has always seen the key of every token it is shown.
"""
from flask import Blueprint, current_app, jsonify, request

from . import keys
from .db import get_db

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


def cacheable(body):
    response = jsonify(body)
    response.headers["Cache-Control"] = f"public, max-age={current_app.config['JWKS_MAX_AGE']}"
    return response


@bp.get("/jwks.json")
def jwks():
    return cacheable(keys.current().jwks(get_db()))


@bp.get("/oauth-authorization-server")
def authorization_server_metadata():
    """Only what is true of this server: no grant types or response types it does not speak."""
    return cacheable(
        {
            "issuer": current_app.config["JWT_ISSUER"],
            "jwks_uri": absolute_url("/.well-known/jwks.json"),
            "token_endpoint": absolute_url("/auth"),
        }
    )


def absolute_url(path):
    """``path`` on this server as the client reached it: Host, or behind trusted proxies X-Forwarded-*.

    Werkzeug leaves the host empty when the Host header holds characters no
    host name has; the server's own address stands in then.
    """
    host = request.host or f"{request.environ['SERVER_NAME']}:{request.environ['SERVER_PORT']}"
    return f"{request.scheme}://{host}{path}"
