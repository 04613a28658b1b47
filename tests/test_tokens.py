"""Which access tokens GET /users/me accepts: forgeries (RFC 8725), claims, the header."""
import hashlib
import hmac
import time
import warnings

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from tests.helpers import (
    CHALLENGE,
    DROP,
    SECRET,
    assert_invalid_token,
    b64json,
    b64url,
    bearer,
    log_in,
    register,
)

OTHER_SECRET = "another-secret-that-is-also-32-bytes-long"


def hs256(signing_input, key=SECRET):
    return b64url(hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest())


class Caller(int):
    """A user id that also knows the session its login opened (the ``sid`` claim)."""

    def __new__(cls, user_id, session_id):
        caller = super().__new__(cls, user_id)
        caller.sid = session_id
        return caller


def logged_in(client):
    """Register and log in a user: the Caller, with the session id of a real token."""
    user_id = register(client)["id"]
    return Caller(user_id, log_in(client).claims["sid"])


def claims_for(user_id, **changes):
    """Claims the server would issue for a Caller; a change to DROP removes that claim."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "sid": user_id.sid,
        "iat": now,
        "exp": now + 900,
        "jti": "a-test-jti-0123456789",
        "iss": "jwt-server",
        "admin": False,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not DROP}


def signed(claims, key=SECRET, algorithm="HS256"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def expired_token(user_id, seconds_ago):
    now = int(time.time())
    return signed(claims_for(user_id, iat=now - 900 - seconds_ago, exp=now - seconds_ago))


def hand_made(header, claims, signature=None):
    """``header.payload`` and, unless ``signature`` is None, a third segment."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    return signing_input if signature is None else f"{signing_input}.{signature}"


def alg_none(alg, claims, signature):
    header = {"alg": alg, "typ": "JWT"}
    if signature == "hmac":
        return hand_made(header, claims, hs256(f"{b64json(header)}.{b64json(claims)}"))
    return hand_made(header, claims, signature)


def get_me(client, token):
    return client.get("/users/me", headers=bearer(token))


@pytest.fixture
def user_id(client):
    return logged_in(client)


def test_a_token_made_by_these_helpers_is_accepted(client, user_id):
    """The control for the catalogue below: only the one change makes each token bad."""
    response = get_me(client, signed(claims_for(user_id)))

    assert response.status_code == 200
    assert response.get_json()["id"] == user_id


def test_a_hand_made_hs256_token_is_accepted(client, user_id):
    header, claims = {"alg": "HS256", "typ": "JWT"}, claims_for(user_id)

    token = hand_made(header, claims, hs256(f"{b64json(header)}.{b64json(claims)}"))

    assert get_me(client, token).status_code == 200


@pytest.mark.parametrize(
    "signature", [None, "", "hmac"], ids=["two-segments", "empty-signature", "hs256-signature"]
)
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_token_is_refused(client, user_id, alg, signature):
    assert_invalid_token(get_me(client, alg_none(alg, claims_for(user_id), signature)))


def strip_signature(token):
    return token.rsplit(".", 1)[0] + "."


def without_signature_segment(token):
    return token.rsplit(".", 1)[0]


def add_segment(token):
    return token + ".AAAA"


def with_signed_extra_segment(token):
    """An extra segment, with a signature that really covers everything before it."""
    header, payload, _ = token.split(".")
    signing_input = f"{header}.{payload}.{b64json({'extra': True})}"
    return f"{signing_input}.{hs256(signing_input)}"


def lowercase_alg(claims):
    header = {"alg": "hs256", "typ": "JWT"}
    return hand_made(header, claims, hs256(f"{b64json(header)}.{b64json(claims)}"))


def with_claims(**changes):
    """A token maker: the usual claims with ``changes``, a callable one given the user id."""

    def make(user_id):
        values = {
            name: value(user_id) if callable(value) else value for name, value in changes.items()
        }
        return signed(claims_for(user_id, **values))

    return make


def in_a_minute(_user_id):
    return int(time.time()) + 60


# Each entry: a function from the user id to a bad token.
FORGED = [
    pytest.param(lambda uid: strip_signature(signed(claims_for(uid))), id="stripped-signature"),
    pytest.param(lambda uid: without_signature_segment(signed(claims_for(uid))), id="no-signature-segment"),
    pytest.param(lambda uid: signed(claims_for(uid), key=OTHER_SECRET), id="another-secret"),
    pytest.param(lambda uid: signed(claims_for(uid), algorithm="HS384"), id="HS384-same-secret"),
    pytest.param(lambda uid: signed(claims_for(uid), algorithm="HS512"), id="HS512-same-secret"),
    pytest.param(lambda uid: lowercase_alg(claims_for(uid)), id="alg-hs256-lowercase"),
    pytest.param(with_claims(exp=DROP), id="missing-exp"),
    pytest.param(lambda uid: expired_token(uid, 60), id="past-exp"),
    pytest.param(with_claims(iat=DROP), id="missing-iat"),
    pytest.param(with_claims(jti=DROP), id="missing-jti"),
    pytest.param(with_claims(iss=DROP), id="missing-iss"),
    pytest.param(with_claims(sub=DROP), id="missing-sub"),
    pytest.param(with_claims(sid=DROP), id="missing-sid"),
    pytest.param(with_claims(sid=lambda uid: int(uid.sid)), id="integer-sid"),
    pytest.param(with_claims(sid=lambda uid: str(int(uid.sid) + 1000)), id="sid-unknown-session"),
    pytest.param(with_claims(iss="someone-else"), id="wrong-iss"),
    pytest.param(with_claims(nbf=in_a_minute), id="nbf-in-future"),
    pytest.param(with_claims(sub=lambda uid: uid), id="integer-sub"),
    pytest.param(with_claims(sub="travis"), id="non-numeric-sub"),
    pytest.param(with_claims(sub=""), id="empty-sub"),
    pytest.param(with_claims(sub="0"), id="sub-zero"),
    pytest.param(with_claims(sub=lambda uid: f"0{uid}"), id="sub-leading-zero"),
    pytest.param(with_claims(sub=lambda uid: f"000{uid}"), id="sub-leading-zeros"),
    pytest.param(with_claims(sub=lambda uid: f" {uid}"), id="sub-leading-space"),
    pytest.param(with_claims(sub=lambda uid: f"{uid} "), id="sub-trailing-space"),
    pytest.param(with_claims(sub=lambda uid: f"{uid}\n"), id="sub-trailing-newline"),
    pytest.param(with_claims(sub=lambda uid: f"+{uid}"), id="sub-plus-sign"),
    pytest.param(with_claims(sub=lambda uid: f"-{uid}"), id="sub-negative"),
    pytest.param(with_claims(sub=lambda uid: f"{uid}.0"), id="sub-decimal"),
    pytest.param(with_claims(sub=lambda uid: f"{uid}_0"), id="sub-underscore"),
    pytest.param(with_claims(sub=lambda uid: chr(0x0660 + uid)), id="sub-arabic-indic-digit"),
    pytest.param(with_claims(sub=str(2**63)), id="sub-2-to-the-63"),
    pytest.param(with_claims(sub="9" * 40), id="sub-huge"),
    pytest.param(with_claims(sub=lambda uid: str(uid + 1000)), id="sub-unknown-user"),
    pytest.param(with_claims(sub=str(2**63 - 1)), id="sub-largest-id-unknown-user"),
    pytest.param(lambda uid: "garbage", id="garbage"),
    pytest.param(lambda uid: "aaaa.bbbb.cccc", id="three-garbage-segments"),
    pytest.param(lambda uid: add_segment(signed(claims_for(uid))), id="extra-segment"),
    pytest.param(lambda uid: signed(claims_for(uid)) + ".", id="extra-empty-segment"),
    pytest.param(lambda uid: with_signed_extra_segment(signed(claims_for(uid))), id="extra-signed-segment"),
]


@pytest.mark.parametrize("make_token", FORGED)
def test_forged_or_broken_token_is_refused(client, user_id, make_token):
    assert_invalid_token(get_me(client, make_token(user_id)))


def test_token_of_a_user_deleted_after_login_is_refused(client, database):
    register(client)
    headers = log_in(client).headers
    assert client.get("/users/me", headers=headers).status_code == 200

    database.execute("DELETE FROM users WHERE username = 'travis'")
    database.commit()

    assert_invalid_token(client.get("/users/me", headers=headers))
    register(client, "newcomer")
    assert_invalid_token(client.get("/users/me", headers=headers))


# The Authorization header


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(client, auth_headers, scheme):
    token = auth_headers["Authorization"].split(" ", 1)[1]

    response = client.get("/users/me", headers={"Authorization": f"{scheme} {token}"})

    assert response.status_code == 200


def test_two_tokens_in_one_header_are_refused(client, auth_headers):
    token = auth_headers["Authorization"].split(" ", 1)[1]

    response = client.get("/users/me", headers={"Authorization": f"Bearer {token} {token}"})

    assert_invalid_token(response)


def test_two_words_after_bearer_are_refused(client, user_id):
    response = client.get("/users/me", headers={"Authorization": "Bearer a b"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "bearer   "])
def test_bearer_without_a_token_is_refused(client, user_id, header):
    response = client.get("/users/me", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)


@pytest.mark.parametrize("header", ["Basic xyz", "Basic dHJhdmlzOnBhc3N3b3Jk", "Token abc", ""])
def test_other_scheme_is_401_with_a_bare_challenge(client, auth_headers, header):
    response = client.get("/users/me", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.get_json()["code"] == "authentication_required"
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_token_with_the_basic_scheme_is_not_accepted(client, auth_headers):
    token = auth_headers["Authorization"].split(" ", 1)[1]

    response = client.get("/users/me", headers={"Authorization": f"Basic {token}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE


# JWT_LEEWAY


def test_token_expired_5_seconds_ago_is_accepted_within_leeway(make_app):
    client = make_app(JWT_LEEWAY=30).test_client()
    user_id = logged_in(client)

    response = get_me(client, expired_token(user_id, 5))

    assert response.status_code == 200
    assert response.get_json()["id"] == user_id


def test_token_expired_beyond_the_leeway_is_refused(make_app):
    client = make_app(JWT_LEEWAY=30).test_client()
    user_id = logged_in(client)

    assert_invalid_token(get_me(client, expired_token(user_id, 60)))


def test_token_expired_5_seconds_ago_is_refused_without_leeway(app, client, user_id):
    assert app.config["JWT_LEEWAY"] == 0

    assert_invalid_token(get_me(client, expired_token(user_id, 5)))


def test_nbf_within_the_leeway_is_accepted(make_app):
    client = make_app(JWT_LEEWAY=30).test_client()
    user_id = logged_in(client)

    token = signed(claims_for(user_id, nbf=int(time.time()) + 5))

    assert get_me(client, token).status_code == 200
