"""Forged tokens a security reviewer would try, after the RFC 8725 and jwt_tool
catalogues, and tokens of sessions or users that no longer exist.

Each forgery starts from a real token the server issued (so it carries a live
``sid``) and changes one thing. Every attack asserts the exact status on every
route a token opens and that the database is unchanged, table by table, row
by row; and that no key was fetched from a URL a token named.
"""
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.helpers import (
    DROP,
    INT64_MAX,
    PASSWORD,
    SECRET,
    Scene,
    assert_invalid_token,
    assert_problem,
    assert_unchanged,
    b64json,
    b64url,
    log_in,
    register,
    snapshot,
)

ATTACKER_SECRET = "attacker-chosen-secret-of-32-bytes-or-more"


def unverified_claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def hand_made(header, claims, key=None, digest=hashlib.sha256, signature=None):
    """``header.payload.signature``, HMAC-signed with ``key`` unless ``signature`` is given."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    if signature is None:
        signature = b64url(hmac.new(key, signing_input.encode(), digest).digest())
    return f"{signing_input}.{signature}"


def changed(claims, changes):
    """``claims`` with ``changes``; a change to DROP removes that claim."""
    return {name: value for name, value in {**claims, **changes}.items() if value is not DROP}


def resigned(token, key=SECRET, header=None, **changes):
    """The token's claims with ``changes``, signed HS256 with ``key`` (the server's by default)."""
    claims = changed(unverified_claims(token), changes)
    return hand_made(header or {"alg": "HS256", "typ": "JWT"}, claims, key.encode())


def with_payload(token, **changes):
    """The token's header and *original signature* around a changed payload."""
    header, _, signature = token.split(".")
    return f"{header}.{b64json(changed(unverified_claims(token), changes))}.{signature}"


def signed_rs256(claims, private_key, header):
    return jwt.encode(claims, private_key, algorithm="RS256", headers=header)


class AttackerKeys:
    """An RSA key pair and self-signed certificate of the attacker's, and their JWKs."""

    def __init__(self):
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_numbers = self.private_key.public_key().public_numbers()
        self.rsa_jwk = {
            "kty": "RSA",
            "kid": "attacker",
            "use": "sig",
            "alg": "RS256",
            "n": b64url(public_numbers.n.to_bytes((public_numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(public_numbers.e.to_bytes(3, "big")),
        }
        self.oct_jwk = {"kty": "oct", "kid": "attacker", "alg": "HS256", "k": b64url(ATTACKER_SECRET.encode())}
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwt-server")])
        now = datetime.now(timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.private_key, hashes.SHA256())
        )
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def x5c(self):
        return [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]

    def files(self):
        """What the attacker's key server serves."""
        return {
            "/jwks.json": json.dumps({"keys": [self.rsa_jwk, self.oct_jwk]}).encode(),
            "/cert.pem": self.certificate.public_bytes(serialization.Encoding.PEM),
        }


@pytest.fixture(scope="module")
def attacker_keys():
    return AttackerKeys()


@pytest.fixture(scope="module")
def key_server(attacker_keys):
    """The attacker's key server on 127.0.0.1; it records every request it gets."""
    files, requests = attacker_keys.files(), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = files.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class ForgeryScene(Scene):
    """The scene, plus the attacker's keys and the URL of their key server."""

    def __init__(self, client, keys, key_server_url):
        super().__init__(client)
        self.keys, self.key_server_url = keys, key_server_url


@pytest.fixture
def scene(client, attacker_keys, key_server):
    return ForgeryScene(client, attacker_keys, key_server[0])


def alg_none_casings():
    return ["".join(letters) for letters in itertools.product(*((c, c.upper()) for c in "none"))]


def alg_none(scene, alg, signature):
    header, claims = {"alg": alg, "typ": "JWT"}, scene.victim_claims
    token = hand_made(header, claims, signature=scene.victim_token.rsplit(".", 1)[1])
    if signature == "none":
        return token.rsplit(".", 1)[0]
    if signature == "empty":
        return token.rsplit(".", 1)[0] + "."
    return token


def victim_rs256(scene, **header):
    """The victim's claims, signed RS256 with the attacker's private key."""
    return signed_rs256(scene.victim_claims, scene.keys.private_key, header)


def victim_hmac(scene, key, digest=hashlib.sha256, **header):
    """The victim's claims under an HS256 header with ``header`` changes, HMAC-signed with ``key``."""
    return hand_made(changed({"alg": "HS256", "typ": "JWT"}, header), scene.victim_claims, key, digest)


def now_plus(seconds):
    return int(time.time()) + seconds


SERVER_KEY, ATTACKER_KEY = SECRET.encode(), ATTACKER_SECRET.encode()

# Each forgery: a function from the scene to a token the server must refuse.
FORGERIES = {
    **{
        f"alg-{alg}-{signature}-signature": (lambda s, alg=alg, signature=signature: alg_none(s, alg, signature))
        for alg in alg_none_casings()
        for signature in ("none", "empty", "original")
    },
    "alg-HS384-same-secret": lambda s: victim_hmac(s, SERVER_KEY, hashlib.sha384, alg="HS384"),
    "alg-HS512-same-secret": lambda s: victim_hmac(s, SERVER_KEY, hashlib.sha512, alg="HS512"),
    "alg-HS384-header-HS256-signature": lambda s: victim_hmac(s, SERVER_KEY, alg="HS384"),
    "alg-missing": lambda s: victim_hmac(s, SERVER_KEY, alg=DROP),
    "alg-RS256-public-key-as-hmac-secret": lambda s: victim_hmac(s, s.keys.public_pem, jwk=s.keys.rsa_jwk),
    "kid-path-traversal-dev-null-empty-key": lambda s: victim_hmac(s, b"", kid="../../../../../../dev/null"),
    "kid-sql-injection-chosen-key": lambda s: victim_hmac(s, b"attacker-key", kid="x' UNION SELECT 'attacker-key' --"),
    "kid-attacker-key-id": lambda s: victim_hmac(s, ATTACKER_KEY, kid="attacker"),
    "jwk-embedded-rsa-key": lambda s: victim_rs256(s, jwk=s.keys.rsa_jwk, kid="attacker"),
    "jwk-embedded-oct-key": lambda s: victim_hmac(s, ATTACKER_KEY, jwk=s.keys.oct_jwk),
    "jku-attacker-jwks-rsa": lambda s: victim_rs256(s, jku=f"{s.key_server_url}/jwks.json", kid="attacker"),
    "jku-attacker-jwks-oct": lambda s: victim_hmac(
        s, ATTACKER_KEY, jku=f"{s.key_server_url}/jwks.json", kid="attacker"
    ),
    "x5u-attacker-certificate": lambda s: victim_rs256(s, x5u=f"{s.key_server_url}/cert.pem"),
    "x5c-embedded-self-signed-certificate": lambda s: victim_rs256(s, x5c=s.keys.x5c()),
    "another-secret": lambda s: resigned(s.victim_token, ATTACKER_SECRET),
    "tampered-sub-original-signature": lambda s: with_payload(s.attacker_token, sub=str(s.victim_id)),
    "tampered-sub-and-sid-original-signature": lambda s: with_payload(
        s.attacker_token, sub=str(s.victim_id), sid=s.victim_claims["sid"]
    ),
    "tampered-admin-original-signature": lambda s: with_payload(s.attacker_token, admin=True),
    "tampered-exp-original-signature": lambda s: with_payload(s.attacker_token, exp=now_plus(10 * 365 * 86400)),
    "stripped-signature": lambda s: s.victim_token.rsplit(".", 1)[0] + ".",
    "expired": lambda s: resigned(s.victim_token, iat=now_plus(-1000), exp=now_plus(-1)),
    "not-yet-valid-nbf": lambda s: resigned(s.victim_token, nbf=now_plus(60)),
    "not-yet-valid-iat-in-the-future": lambda s: resigned(s.victim_token, iat=now_plus(60), exp=now_plus(960)),
    **{
        f"missing-{claim}": (lambda s, claim=claim: resigned(s.victim_token, **{claim: DROP}))
        for claim in ("sub", "iat", "exp", "jti", "iss", "sid")
    },
    "wrong-issuer": lambda s: resigned(s.victim_token, iss="someone-else"),
    "empty-issuer": lambda s: resigned(s.victim_token, iss=""),
    "issuer-as-a-list": lambda s: resigned(s.victim_token, iss=["jwt-server"]),
    "sid-of-another-users-session": lambda s: resigned(s.attacker_token, sid=s.victim_claims["sid"]),
    "sid-unknown": lambda s: resigned(s.victim_token, sid="999999"),
    "sid-as-an-integer": lambda s: resigned(s.victim_token, sid=int(s.victim_claims["sid"])),
    "sid-huge": lambda s: resigned(s.victim_token, sid="9" * 40),
    "sid-past-int64": lambda s: resigned(s.victim_token, sid=str(INT64_MAX + 1)),
    "sid-sql-injection": lambda s: resigned(s.victim_token, sid="1 OR 1=1"),
    "sub-sql-injection": lambda s: resigned(s.victim_token, sub="1 OR 1=1"),
}


def test_the_control_token_re_signed_with_the_server_secret_is_accepted(scene, database):
    """Each forgery below changes one thing of this token, which the server accepts."""
    token = resigned(scene.victim_token)

    statuses = [scene.call(method, path, token, **kwargs).status_code for method, path, kwargs in scene.targets()]

    # The victim is no administrator (403); revoking every session ends this one too (401 at logout).
    assert statuses == [200, 403, 201, 200, 204, 200, 204, 204, 401]
    assert unverified_claims(token) == scene.victim_claims


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_token_is_refused_everywhere_and_changes_nothing(scene, database, key_server, forge):
    token = forge(scene)
    before = snapshot(database)

    for method, path, kwargs in scene.targets():
        assert_invalid_token(scene.call(method, path, token, **kwargs))

    assert_unchanged(database, before)
    assert key_server[1] == [], "the server fetched a key from a URL a token named"


def test_admin_claim_re_signed_with_the_secret_does_not_make_an_admin(scene, database):
    """Admin rights come from the database, whatever the token says."""
    before = snapshot(database)

    response = scene.call("GET", "/users", resigned(scene.victim_token, admin=True))

    assert response.status_code == 403
    assert response.get_json()["code"] == "insufficient_scope"
    assert_unchanged(database, before)


def test_token_of_a_logged_out_session_is_refused(scene, database):
    assert scene.call("POST", "/auth/logout", scene.victim_token).status_code == 204
    before = snapshot(database)

    for method, path, kwargs in scene.targets():
        assert_invalid_token(scene.call(method, path, scene.victim_token, **kwargs))

    assert_unchanged(database, before)


def test_token_of_a_user_who_deleted_their_account_is_refused(scene, database):
    deleted = scene.call("DELETE", "/users/me", scene.victim_token, json={"password": PASSWORD})
    assert deleted.status_code == 204
    before = snapshot(database)

    for token in (scene.victim_token, resigned(scene.victim_token)):
        for method, path, kwargs in scene.targets():
            assert_invalid_token(scene.call(method, path, token, **kwargs))
    refreshed = scene.client.post("/auth/refresh", json={"refresh_token": scene.victim_refresh_token})

    assert_problem(refreshed, 401, "invalid_refresh_token")
    assert_unchanged(database, before)


def test_token_of_a_user_deleted_from_the_database_is_refused(scene, database):
    database.execute("DELETE FROM users WHERE id = ?", (scene.victim_id,))
    database.commit()
    register(scene.client, "newcomer")
    log_in(scene.client, "newcomer")
    before = snapshot(database)

    for method, path, kwargs in scene.targets():
        assert_invalid_token(scene.call(method, path, scene.victim_token, **kwargs))

    assert_unchanged(database, before)
