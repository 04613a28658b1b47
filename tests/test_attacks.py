"""Attacks a security reviewer would run: forged tokens, hostile bodies, hostile paths.

Tokens follow the RFC 8725 and jwt_tool catalogues: each forgery starts from
a real token the server issued (so it carries a live ``sid``) and changes one
thing. Every attack asserts the exact status and that the database is
unchanged, table by table, row by row.
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

from tests.conftest import PASSWORD, SECRET, assert_problem, register

ATTACKER_SECRET = "attacker-chosen-secret-of-32-bytes-or-more"
DROP = object()
SQL_FRAGMENTS = [
    "' OR 1=1 --",
    "victim' --",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1 UNION SELECT password_hash FROM users",
]
INT64_MAX = 2**63 - 1
BIG = 60_000  # under the 64 KiB body limit once quoted


# The database, before and after


def snapshot(database):
    """Every row of every table, to compare before and after an attack."""
    tables = [name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        table: sorted((tuple(row) for row in database.execute(f'SELECT * FROM "{table}"')), key=repr)
        for table in tables
    }


def assert_unchanged(database, before, ignoring=()):
    """Nothing changed but ``ignoring`` (the login throttle counts failures, as it must)."""
    after = snapshot(database)
    for table in set(before) | set(after):
        if table not in ignoring:
            assert after.get(table) == before.get(table), f"table {table} changed"


# Tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value):
    return b64url(json.dumps(value).encode())


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


def log_in(client, username, password=PASSWORD):
    return token_response(client, username, password)["access_token"]


def token_response(client, username, password=PASSWORD):
    response = client.post("/auth", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class Scene:
    """A victim with a pet and a live session, and an attacker with a real token of their own."""

    def __init__(self, client, keys, key_server_url):
        self.client, self.keys, self.key_server_url = client, keys, key_server_url
        self.victim_id = register(client, "victim")["id"]
        tokens = token_response(client, "victim")
        self.victim_token, self.victim_refresh_token = tokens["access_token"], tokens["refresh_token"]
        self.victim_claims = unverified_claims(self.victim_token)
        self.victim_pet = self.call("POST", "/pets", self.victim_token, json={"name": "Bunny"}).get_json()["id"]
        self.attacker_id = register(client, "mallory")["id"]
        self.attacker_token = log_in(client, "mallory")

    def call(self, method, path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def targets(self):
        """What a forged token would be used for: read, write, destroy, admin, log out."""
        return [
            ("GET", "/users/me", {}),
            ("GET", "/users", {}),
            ("POST", "/pets", {"json": {"name": "planted"}}),
            ("PATCH", f"/pets/{self.victim_pet}", {"json": {"name": "stolen"}}),
            ("DELETE", f"/pets/{self.victim_pet}", {}),
            ("GET", "/users/me/sessions", {}),
            ("PUT", "/users/me/password", {"json": {"current_password": PASSWORD, "new_password": "attacker's"}}),
            ("DELETE", "/users/me/sessions", {}),
            ("POST", "/auth/logout", {}),
        ]


@pytest.fixture
def scene(client, attacker_keys, key_server):
    return Scene(client, attacker_keys, key_server[0])


def assert_invalid_token(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


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


# Hostile bodies


def nested(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


WRONG_TYPES = [123, 1.5, True, None, [], {}, ["a"], {"$ne": ""}, json.loads(nested(200))]
# Each route that takes a body: method, path (pet ids filled in), whether it needs the attacker's token.
BODY_ROUTES = {
    "register": ("POST", "/users", False),
    "log-in": ("POST", "/auth", False),
    "refresh": ("POST", "/auth/refresh", False),
    "create-pet": ("POST", "/pets", True),
    "patch-pet": ("PATCH", "/pets/{own_pet}", True),
    "put-pet": ("PUT", "/pets/{own_pet}", True),
    "change-password": ("PUT", "/users/me/password", True),
    "delete-account": ("DELETE", "/users/me", True),
}
# Well-formed bodies; each test replaces one field with something hostile.
WELL_FORMED = {
    "register": {"username": "newuser", "password": PASSWORD},
    "log-in": {"username": "mallory", "password": "wrong password"},
    "refresh": {"refresh_token": "not-a-refresh-token"},
    "create-pet": {"name": "Rex", "species": "dog"},
    "patch-pet": {"name": "Rex", "species": "dog"},
    "put-pet": {"name": "Rex", "species": "dog"},
    "change-password": {"current_password": PASSWORD, "new_password": "a new password"},
    "delete-account": {"password": PASSWORD},
}
# What a wrong value in one field gets, per route: 422 naming the field, except a refresh token (401).
WRONG_VALUE = {
    "register": (422, "validation_error"),
    "log-in": (422, "validation_error"),
    "refresh": (401, "invalid_refresh_token"),
    "create-pet": (422, "validation_error"),
    "patch-pet": (422, "validation_error"),
    "put-pet": (422, "validation_error"),
    "change-password": (422, "validation_error"),
    "delete-account": (422, "validation_error"),
}
# A failed login, or a wrong password at the password routes, is counted by
# the throttle: that table may change, no other.
BOOKKEEPING = {route: {"login_throttle"} for route in ("log-in", "change-password", "delete-account")}


class Target:
    def __init__(self, scene, route):
        self.scene, self.route = scene, route
        method, path, needs_token = BODY_ROUTES[route]
        self.own_pet = scene.call("POST", "/pets", scene.attacker_token, json={"name": "Own"}).get_json()["id"]
        self.method, self.path = method, path.format(own_pet=self.own_pet)
        self.token = scene.attacker_token if needs_token else None

    def send(self, **kwargs):
        return self.scene.call(self.method, self.path, self.token, **kwargs)


@pytest.fixture(params=BODY_ROUTES, ids=BODY_ROUTES.keys())
def target(request, scene):
    return Target(scene, request.param)


RAW_BODIES = [
    pytest.param(b'{"username": "a", ', 400, "malformed_json", id="truncated"),
    pytest.param(b"{'name': 'Bunny'}", 400, "malformed_json", id="single-quotes"),
    pytest.param(b'{"name": NaN}', 422, None, id="nan"),
    pytest.param(b'{"name": "Bun\x00ny"}', 400, "malformed_json", id="raw-nul-byte"),
    pytest.param(b'{"name": "Bunny\xff\xfe"}', 400, "malformed_json", id="non-utf-8"),
    pytest.param(nested(20_000).encode(), 400, "malformed_json", id="20000-nested-arrays"),
    pytest.param(('{"a":' * 10_000 + "1" + "}" * 10_000).encode(), 400, "malformed_json", id="10000-nested-objects"),
    pytest.param(b"[" * 60_000, 400, "malformed_json", id="60000-open-brackets"),
    pytest.param(b'{"name": "' + b"x" * (64 * 1024) + b'"}', 413, "payload_too_large", id="over-64-KiB"),
]


@pytest.mark.parametrize("data, status, code", RAW_BODIES)
def test_hostile_raw_body_is_refused_and_changes_nothing(target, database, data, status, code):
    before = snapshot(database)

    response = target.send(data=data, content_type="application/json")

    if code is None:  # Python's json reads NaN: then the body is merely invalid for the route
        status, code = WRONG_VALUE[target.route]
    assert_problem(response, status, code)
    assert_unchanged(database, before, BOOKKEEPING.get(target.route, ()))


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("text/plain", b'{"name": "Bunny"}'),
        ("application/xml", b"<pet/>"),
        ("application/json-patch+json", b"[]"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
def test_other_body_types_are_415_and_change_nothing(target, database, content_type, data):
    before = snapshot(database)

    response = target.send(data=data, content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert_unchanged(database, before)


@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda value: type(value).__name__ + ":" + json.dumps(value)[:12])
def test_wrong_type_in_every_field_is_refused_and_changes_nothing(target, database, value):
    for field in WELL_FORMED[target.route]:
        if field == "species" and value is None:
            continue  # null is a valid species
        before = snapshot(database)

        response = target.send(json={**WELL_FORMED[target.route], field: value})

        status, code = WRONG_VALUE[target.route]
        body = assert_problem(response, status, code)
        if status == 422:
            assert field in [error["field"] for error in body["errors"]], body
        assert_unchanged(database, before, BOOKKEEPING.get(target.route, ()))


@pytest.mark.parametrize("data", ["[1, 2]", '"a string"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_refused_and_changes_nothing(target, database, data):
    before = snapshot(database)

    response = target.send(data=data, content_type="application/json")

    # 400, which API.md allows on every route that takes a body.
    assert_problem(response, 400, "invalid_body")
    assert_unchanged(database, before)


# Hostile strings, field by field: (route, field, value, status, code)
HOSTILE_STRINGS = [
    *[("register", "username", fragment, 422, "validation_error") for fragment in SQL_FRAGMENTS],
    ("register", "username", "x" * BIG, 422, "validation_error"),
    ("register", "username", "vic\u0000tim", 422, "validation_error"),
    ("register", "username", "VICTIM", 409, "username_taken"),
    ("register", "username", "victim\u0000", 422, "validation_error"),
    ("register", "username", "v\u0131ctim", 422, "validation_error"),
    ("register", "password", "p" * BIG, 422, "validation_error"),
    ("register", "password", "pass\u0000word-long", 422, "validation_error"),
    ("register", "password", "lone \ud800 surrogate", 422, "validation_error"),
    *[("log-in", "username", fragment, 401, "invalid_credentials") for fragment in SQL_FRAGMENTS],
    *[("log-in", "password", fragment, 401, "invalid_credentials") for fragment in SQL_FRAGMENTS],
    ("log-in", "username", "x" * BIG, 401, "invalid_credentials"),
    ("log-in", "password", "x" * BIG, 401, "invalid_credentials"),
    ("log-in", "username", "mallory\u0000", 401, "invalid_credentials"),
    ("log-in", "password", PASSWORD + "\u0000", 401, "invalid_credentials"),
    ("log-in", "password", "\u0000" + PASSWORD, 401, "invalid_credentials"),
    ("log-in", "username", "mallory\ud800", 401, "invalid_credentials"),
    ("log-in", "password", "\udfff", 401, "invalid_credentials"),
    ("log-in", "password", PASSWORD + "x" * 100, 401, "invalid_credentials"),
    *[("refresh", "refresh_token", fragment, 401, "invalid_refresh_token") for fragment in SQL_FRAGMENTS],
    ("refresh", "refresh_token", "x" * BIG, 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "abc\u0000def", 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "\ud800", 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "", 401, "invalid_refresh_token"),
    ("create-pet", "name", "x" * BIG, 422, "validation_error"),
    ("create-pet", "name", "Bun\u0000ny", 422, "validation_error"),
    ("create-pet", "name", "\ud800", 422, "validation_error"),
    ("create-pet", "name", " " * 50, 422, "validation_error"),
    ("create-pet", "species", "x" * BIG, 422, "validation_error"),
    ("create-pet", "species", "d\u0000g", 422, "validation_error"),
    ("patch-pet", "name", "x" * BIG, 422, "validation_error"),
    ("patch-pet", "name", "Bun\u0000ny", 422, "validation_error"),
    ("patch-pet", "species", "\udc00", 422, "validation_error"),
    ("put-pet", "name", "x" * BIG, 422, "validation_error"),
    ("put-pet", "species", "d\u0000g", 422, "validation_error"),
    *[("change-password", "current_password", fragment, 403, "wrong_password") for fragment in SQL_FRAGMENTS],
    ("change-password", "current_password", "x" * BIG, 403, "wrong_password"),
    ("change-password", "current_password", PASSWORD + "\u0000", 403, "wrong_password"),
    ("change-password", "new_password", "x" * BIG, 422, "validation_error"),
    ("change-password", "new_password", "new\u0000password", 422, "validation_error"),
    ("change-password", "new_password", "\ud800" * 10, 422, "validation_error"),
    *[("delete-account", "password", fragment, 403, "wrong_password") for fragment in SQL_FRAGMENTS],
    ("delete-account", "password", "x" * BIG, 403, "wrong_password"),
    ("delete-account", "password", PASSWORD + "\u0000", 403, "wrong_password"),
    ("delete-account", "password", "\ud800", 403, "wrong_password"),
]


@pytest.mark.parametrize(
    "route, field, value, status, code",
    HOSTILE_STRINGS,
    ids=[f"{route}-{field}-{json.dumps(value)[:24]}" for route, field, value, *_ in HOSTILE_STRINGS],
)
def test_hostile_string_is_refused_and_changes_nothing(scene, database, route, field, value, status, code):
    target = Target(scene, route)
    before = snapshot(database)

    response = target.send(json={**WELL_FORMED[route], field: value})

    body = assert_problem(response, status, code)
    if status == 422:
        assert [error["field"] for error in body["errors"]] == [field], body
    assert_unchanged(database, before, BOOKKEEPING.get(route, ()))


@pytest.mark.parametrize(
    "form",
    [
        b"username=%ff%fe&password=%ff",
        b"username=mallory%00&password=x",
        b"username=mallory&password=" + b"%00" * 10,
        b"username=%27%20OR%201%3D1%20--&password=%27%20OR%201%3D1%20--",
        b"username=mallory&password=%c3%28",
        b"username=" + b"x" * BIG + b"&password=x",
        b"username[]=mallory&password[$ne]=x&username=mallory&password=x",
    ],
)
@pytest.mark.parametrize("path", ["/auth", "/auth/refresh"])
def test_hostile_form_on_the_routes_that_take_forms_is_refused(scene, database, path, form):
    before = snapshot(database)

    response = scene.client.post(path, data=form, content_type="application/x-www-form-urlencoded")

    if path == "/auth":
        assert_problem(response, 401, "invalid_credentials")
    else:
        assert_problem(response, 401, "invalid_refresh_token")
    assert_unchanged(database, before, {"login_throttle"})


# Hostile values the server must accept as the literal text they are


def stored(database, sql, *parameters):
    return [tuple(row) for row in database.execute(sql, parameters)]


@pytest.mark.parametrize("fragment", SQL_FRAGMENTS)
def test_sql_in_a_password_is_stored_as_a_hash_and_logs_in_literally(scene, database, fragment):
    password = fragment.ljust(8, "!")
    before = snapshot(database)

    response = scene.client.post("/users", json={"username": "bobby.tables", "password": password})

    assert response.status_code == 201
    after = snapshot(database)
    assert {table for table in after if after[table] != before[table]} <= {"users", "sqlite_sequence"}
    assert len(after["users"]) == len(before["users"]) + 1
    assert log_in(scene.client, "bobby.tables", password)
    assert scene.client.post("/auth", json={"username": "bobby.tables", "password": "' OR 1=1 --x"}).status_code == 401


@pytest.mark.parametrize("fragment", SQL_FRAGMENTS)
def test_sql_in_a_pet_name_and_species_is_stored_literally(scene, database, fragment):
    users_before = stored(database, "SELECT * FROM users ORDER BY id")
    others_before = stored(database, "SELECT * FROM pets WHERE user_id != ? ORDER BY id", scene.attacker_id)

    created = scene.call("POST", "/pets", scene.attacker_token, json={"name": fragment, "species": fragment[:50]})
    pet_id = created.get_json()["id"]
    patched = scene.call("PATCH", f"/pets/{pet_id}", scene.attacker_token, json={"name": fragment + "'"})

    assert created.status_code == 201 and patched.status_code == 200
    assert stored(database, "SELECT name, species FROM pets WHERE id = ?", pet_id) == [
        (fragment + "'", fragment[:50])
    ]
    assert stored(database, "SELECT * FROM users ORDER BY id") == users_before
    assert stored(database, "SELECT * FROM pets WHERE user_id != ? ORDER BY id", scene.attacker_id) == others_before
    species_filter = scene.call("GET", "/pets", scene.attacker_token, query_string={"species": "' OR 1=1 --"})
    assert species_filter.status_code == 200
    expected = [fragment] if fragment == "' OR 1=1 --" else []
    assert [pet["species"] for pet in species_filter.get_json()] == expected


# Hostile paths and query strings

HOSTILE_IDS = [
    "0",
    "-1",
    "00",
    "1e3",
    "0x10",
    "1.0",
    "%201",
    "１",
    str(INT64_MAX),
    str(INT64_MAX + 1),
    "9" * 40,
    "9" * 4000,
    "1%20OR%201=1",
    "1;DROP%20TABLE%20pets",
]


@pytest.mark.parametrize("pet_id", HOSTILE_IDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_hostile_pet_id_is_404_and_changes_nothing(scene, database, method, pet_id):
    before = snapshot(database)

    response = scene.call(method, f"/pets/{pet_id}", scene.attacker_token, json={"name": "Rex"})

    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["code"] in {"not_found", "pet_not_found"}
    assert_unchanged(database, before)


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_hostile_session_id_is_404_and_changes_nothing(scene, database, session_id):
    before = snapshot(database)

    response = scene.call("DELETE", f"/users/me/sessions/{session_id}", scene.attacker_token)

    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["code"] in {"not_found", "session_not_found"}
    assert_unchanged(database, before)


def test_another_users_session_id_is_404_and_stays_live(scene, database):
    before = snapshot(database)

    response = scene.call("DELETE", f"/users/me/sessions/{scene.victim_claims['sid']}", scene.attacker_token)

    assert_problem(response, 404, "session_not_found")
    assert_unchanged(database, before)
    assert scene.call("GET", "/users/me", scene.victim_token).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "1 OR 1=1"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1001"},
        {"limit": "9" * 40},
        {"limit": "1e3"},
        {"after": "-1"},
        {"after": str(INT64_MAX + 1)},
        {"after": "0 UNION SELECT 1"},
        {"species": "d\u0000g"},
        {"species": "x" * 5000},
        {"species": "   "},
    ],
)
def test_hostile_query_on_pets_is_422_and_changes_nothing(scene, database, query):
    before = snapshot(database)

    response = scene.call("GET", "/pets", scene.attacker_token, query_string=query)

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == list(query)
    assert_unchanged(database, before)
