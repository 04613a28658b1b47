"""A resource server in Python that trusts jwt-server's access tokens knowing only the JWKS URL.

PyJWT's PyJWKClient fetches the keys and picks one by the token's kid; the
signature, algorithm (the key's own), issuer, audience and expiry are checked.

    pip install 'pyjwt[crypto]'
    JWKS_URL=https://api.example.com/.well-known/jwks.json python3 resource_server.py

GET any path with ``Authorization: Bearer <token>``: 200 {"sub", "kid"}, or
401 {"error": "invalid_token", "detail"}.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

ISSUER = os.environ.get("ISSUER") or "jwt-server"
AUDIENCE = os.environ.get("AUDIENCE") or None
PORT = int(os.environ.get("PORT") or 8082)
# Cache the key set no longer than the server says it may (its JWKS_MAX_AGE):
# a new key signs only that long after it is published. An unknown kid
# fetches the set again.
jwks = jwt.PyJWKClient(os.environ["JWKS_URL"], lifespan=int(os.environ.get("JWKS_MAX_AGE") or 300))


def verify(authorization):
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise jwt.InvalidTokenError("Authorization: Bearer <token> is required")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],
        issuer=ISSUER,
        audience=AUDIENCE,
        options={"require": ["sub", "exp", "iat", "iss"], "verify_aud": AUDIENCE is not None},
    )
    return {"sub": claims["sub"], "kid": key.key_id}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            status, body = 200, verify(self.headers.get("Authorization", ""))
        except jwt.PyJWTError as error:
            status, body = 401, {"error": "invalid_token", "detail": str(error)}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"resource server on http://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()
