"""Attacks on asymmetric tokens: algorithm confusion, hostile kids, withdrawn and foreign keys.

Each forgery is made as an attacker would make it, from what the server
publishes (its JWKS) or from a key the attacker holds, and is presented to
every kind of route; the server must answer 401 invalid_token and change
nothing. The controls show that the same token, signed properly, is accepted.
"""
import hashlib
import hmac
import json
import sqlite3
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwt_server.keys import unseal
from tests.helpers import (
    SECRET,
    assert_invalid_token,
    assert_unchanged,
    b64json,
    b64url,
    build_app,
    log_in,
    register,
    snapshot,
)

ASYMMETRIC = ["EdDSA", "ES256", "RS256"]
OTHER_SECRET = "another-servers-secret-of-32-bytes-or-more"
NEW_KEYS = {
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def unverified(token):
    return jwt.decode(token, options={"verify_signature": False})


def hmac_signed(header, claims, key):
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def hand_signed(header, claims, private_key, algorithm):
    """``header.claims.signature`` with any header at all, signed with ``private_key``."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = jwt.get_algorithm_by_name(algorithm).sign(signing_input.encode(), private_key)
    return f"{signing_input}.{b64url(signature)}"


class Server:
    """A server with JWT_ALGORITHM ``algorithm``, a victim with a live session, and its published key."""

    def __init__(self, database, algorithm, secret=SECRET, **settings):
        self.app = build_app(database, JWT_ALGORITHM=algorithm, JWT_SECRET=secret, **settings)
        self.algorithm, self.client = algorithm, self.app.test_client()
        register(self.client, "victim")
        self.token = log_in(self.client, "victim").access
        self.claims = unverified(self.token)
        self.kid = jwt.get_unverified_header(self.token)["kid"]
        self.jwk = self.client.get("/.well-known/jwks.json").get_json()["keys"][0]
        self.public_key = jwt.PyJWK(self.jwk).key

    def private_key(self, secret=SECRET):
        """What a thief of the database and the secret would hold."""
        connection = sqlite3.connect(self.app.config["DATABASE"])
        sealed = connection.execute("SELECT private_key FROM signing_keys WHERE kid = ?", (self.kid,)).fetchone()[0]
        connection.close()
        return unseal(sealed, self.kid, [secret])[0]

    def signed(self, private_key, header=None, **changes):
        claims = {**self.claims, **changes}
        return jwt.encode(claims, private_key, algorithm=self.algorithm, headers={"kid": self.kid, **(header or {})})

    def requests(self):
        """Read, write, and end the session: what a forged token would be used for."""
        return [
            ("GET", "/users/me", {}),
            ("POST", "/pets", {"json": {"name": "planted"}}),
            ("PUT", "/users/me/password", {"json": {"current_password": "x" * 8, "new_password": "y" * 8}}),
            ("DELETE", "/users/me/sessions", {}),
        ]

    def assert_refused_everywhere(self, token, database):
        before = snapshot(database)
        for method, path, kwargs in self.requests():
            headers = {"Authorization": f"Bearer {token}"}
            assert_invalid_token(self.client.open(path, method=method, headers=headers, **kwargs))
        assert_unchanged(database, before)


@pytest.fixture(params=ASYMMETRIC)
def server(request, tmp_path):
    return Server(tmp_path / "server.sqlite", request.param)


@pytest.fixture
def database(server):
    connection = sqlite3.connect(server.app.config["DATABASE"])
    yield connection
    connection.close()


def test_the_controls_tokens_signed_with_the_servers_own_key_are_accepted(server):
    tokens = [
        server.signed(server.private_key(), jti="a-control-token"),
        hand_signed(
            {"alg": server.algorithm, "kid": server.kid}, server.claims, server.private_key(), server.algorithm
        ),
    ]

    for token in tokens:
        assert server.client.get("/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# Algorithm confusion: HS256 over the public key, as a verifier that let the token choose would check it


def public_key_forms(server):
    """Every form in which an attacker might guess a verifier holds the public key."""
    pem = server.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = server.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"pem": pem, "pem-without-newline": pem.strip(), "der": der, "jwk-json": json.dumps(server.jwk).encode()}


@pytest.mark.parametrize("form", ["pem", "pem-without-newline", "der", "jwk-json"])
@pytest.mark.parametrize("kid", ["servers", "none"])
def test_hs256_token_with_the_public_key_as_hmac_secret_is_refused(server, database, form, kid):
    header = {"alg": "HS256", "typ": "JWT", **({"kid": server.kid} if kid == "servers" else {})}

    token = hmac_signed(header, server.claims, public_key_forms(server)[form])

    server.assert_refused_everywhere(token, database)


def test_a_kid_of_another_algorithm_is_refused(server, database):
    for alg in {"EdDSA", "ES256", "RS256"} - {server.algorithm}:
        token = hand_signed({"alg": alg, "kid": server.kid}, server.claims, NEW_KEYS[alg](), alg)
        server.assert_refused_everywhere(token, database)
    for alg in ("PS256", "ES384", "none"):
        header = {"alg": alg, "typ": "JWT", "kid": server.kid}
        token = f"{b64json(header)}.{b64json(server.claims)}." + server.token.rsplit(".", 1)[1]
        server.assert_refused_everywhere(token, database)


# Hostile kids: the key is looked up in memory, never in a file or a query


HOSTILE_KIDS = [
    "../../../../../../dev/null",
    "/dev/null",
    "../../../../etc/passwd",
    "x' UNION SELECT public_jwk FROM signing_keys --",
    "' OR '1'='1",
    "{kid}' OR '1'='1",
    "{kid}\u0000",
    "{kid} ",
    "{kid}/../{kid}",
    "A" * 43,
    "",
    "A" * 10_000,
]


@pytest.mark.parametrize("kid", HOSTILE_KIDS, ids=range(len(HOSTILE_KIDS)))
def test_a_hostile_kid_is_refused_and_changes_nothing(server, database, kid):
    kid = kid.replace("{kid}", server.kid)

    signed_with_own_key = server.signed(server.private_key(), header={"kid": kid})
    signed_with_empty_hmac = hmac_signed({"alg": "HS256", "kid": kid}, server.claims, b"")

    server.assert_refused_everywhere(signed_with_own_key, database)
    server.assert_refused_everywhere(signed_with_empty_hmac, database)


@pytest.mark.parametrize("kid", [7, None, ["a"], {"kid": "x"}, True])
def test_a_kid_that_is_not_a_string_is_refused(server, database, kid):
    token = hand_signed({"alg": server.algorithm, "kid": kid}, server.claims, server.private_key(), server.algorithm)

    server.assert_refused_everywhere(token, database)


# Keys the token brings itself


@pytest.mark.parametrize("parameter", ["jwk", "jku", "x5u", "x5c"])
def test_a_token_that_names_its_own_key_is_refused_even_when_signed_by_the_servers(server, database, parameter):
    values = {"jwk": server.jwk, "jku": "https://attacker.example/jwks.json",
              "x5u": "https://attacker.example/cert.pem", "x5c": ["MIIB"]}

    token = server.signed(server.private_key(), header={parameter: values[parameter]})

    server.assert_refused_everywhere(token, database)


def test_a_token_signed_by_an_attackers_key_embedded_as_jwk_is_refused(server, database):
    attacker_key = NEW_KEYS[server.algorithm]()
    attacker_jwk = json.loads(jwt.get_algorithm_by_name(server.algorithm).to_jwk(attacker_key.public_key()))

    token = jwt.encode(server.claims, attacker_key, algorithm=server.algorithm, headers={"jwk": attacker_jwk})

    server.assert_refused_everywhere(token, database)


# Keys of other servers


def test_a_token_of_another_server_is_refused(server, database, tmp_path):
    other = Server(tmp_path / "other.sqlite", server.algorithm, secret=OTHER_SECRET)
    assert other.claims["sub"] == server.claims["sub"] and other.claims["sid"] == server.claims["sid"]

    server.assert_refused_everywhere(other.token, database)


def test_another_servers_key_under_this_servers_kid_is_refused(server, database, tmp_path):
    other = Server(tmp_path / "other.sqlite", server.algorithm, secret=OTHER_SECRET)

    token = server.signed(other.private_key(OTHER_SECRET))

    server.assert_refused_everywhere(token, database)


def test_another_servers_public_key_as_hmac_secret_is_refused(server, database, tmp_path):
    other = Server(tmp_path / "other.sqlite", server.algorithm, secret=OTHER_SECRET)
    pem = other.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    token = hmac_signed({"alg": "HS256", "kid": other.kid}, server.claims, pem)

    server.assert_refused_everywhere(token, database)


# Withdrawn keys


def test_a_token_signed_by_a_withdrawn_key_is_refused_even_if_it_was_accepted_before(tmp_path):
    server = Server(tmp_path / "server.sqlite", "EdDSA", JWKS_MAX_AGE=1, ACCESS_TOKEN_TTL=1)
    withdrawn_key = server.private_key()
    # A thief of the old key mints a token that outlives the key.
    long_lived = server.signed(withdrawn_key, exp=int(time.time()) + 3600, jti="long-lived")
    assert server.client.get("/users/me", headers={"Authorization": f"Bearer {long_lived}"}).status_code == 200

    assert server.app.test_cli_runner().invoke(args=["rotate-signing-key"]).exit_code == 0
    connection = sqlite3.connect(server.app.config["DATABASE"])
    retires_at = connection.execute("SELECT retires_at FROM signing_keys WHERE kid = ?", (server.kid,)).fetchone()[0]
    time.sleep(max(retires_at + 1 - time.time(), 0) + 0.6)  # past ACCESS_TOKEN_TTL, and a reload
    kids = {key["kid"] for key in server.client.get("/.well-known/jwks.json").get_json()["keys"]}
    assert server.kid not in kids

    fresh = server.signed(withdrawn_key, iat=int(time.time()), exp=int(time.time()) + 3600, jti="fresh")
    server.assert_refused_everywhere(long_lived, connection)
    server.assert_refused_everywhere(fresh, connection)
    connection.close()
