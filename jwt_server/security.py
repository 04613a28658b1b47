"""Passwords and tokens: bcrypt and JWT. No routes, no request state: only the arguments."""
import functools
import math
import re
import secrets
import sys
import time
import unicodedata
from dataclasses import dataclass

import bcrypt
import jwt

from .db import MAX_ID

# Header parameters by which a token names a key of its own choosing (RFC 7515 §4.1).
UNTRUSTED_HEADERS = {"jwk", "jku", "x5u", "x5c"}
REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti", "iss", "sid"]
BCRYPT_MAX_BYTES = 72

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_ROW_ID = re.compile(r"[1-9][0-9]{0,18}")


def normalized(password):
    """The password as it is hashed and compared: NFKC, so that NFC and NFD typings are one password."""
    return unicodedata.normalize("NFKC", password)


def password_bytes(password):
    """The password as bcrypt takes it, or None if bcrypt cannot take it.

    bcrypt 5 raises ValueError beyond 72 bytes (older versions silently
    ignored the rest) and C strings end at NUL, so such a password is simply
    one that matches no hash.
    """
    if not isinstance(password, str):
        return None
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(encoded) > BCRYPT_MAX_BYTES or b"\0" in encoded:
        return None
    return encoded


def off_the_event_loop(function, *args):
    """Run bcrypt (a quarter of a second, GIL released) in a thread under gevent.

    Under gunicorn's gevent worker a bcrypt call in the worker's own thread
    would stall every other request and socket of the worker; gevent's
    thread pool runs it beside them. Under threads it runs where it is.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return function(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(function, args)


def password_forms(password):
    """What a stored hash may be a hash of: the NFKC form, then the password as typed if that differs.

    Hashes stored before passwords were normalized are of the password as it
    was typed. A form bcrypt cannot take is None.
    """
    if not isinstance(password, str):
        return [None]
    forms = [normalized(password)]
    if forms[0] != password:
        forms.append(password)
    return [password_bytes(form) for form in forms]


def hash_password(password, rounds):
    salt = bcrypt.gensalt(rounds)
    return off_the_event_loop(bcrypt.hashpw, password_bytes(normalized(password)), salt).decode("ascii")


@functools.cache
def dummy_hash(rounds):
    """A hash nobody knows the password of, at the configured cost.

    Logging in as an unknown user is checked against it, so that the answer
    takes as long as for a known user with a wrong password and timing does
    not tell which usernames exist.
    """
    return hash_password(secrets.token_urlsafe(32), rounds).encode("ascii")


@dataclass(frozen=True)
class PasswordCheck:
    matched: bool
    # The password is right, but its hash should be replaced: another cost,
    # or a hash of the password as typed rather than of its NFKC form.
    needs_rehash: bool = False


def check_password(password, password_hash, rounds):
    """Whether ``password`` matches ``password_hash``, in a time that depends on ``password`` alone.

    ``password_hash`` is None for an unknown user. Each form of the password
    (password_forms) costs one bcrypt check at cost ``rounds``, whatever the
    user: a missing user, a malformed hash or a form bcrypt cannot take is
    checked against the dummy hash, and a hash of a lower cost is topped up
    (equalize). A hash of a higher cost than ``rounds`` takes its own, longer
    time: there is no cheaper way to check it, and the next login replaces it.
    """
    stored_cost = hash_cost(password_hash)
    forms = password_forms(password)
    for candidate in forms:
        if candidate is None or stored_cost is None:
            off_the_event_loop(bcrypt.checkpw, b"not the password", dummy_hash(rounds))
        elif checked(candidate, password_hash, stored_cost, rounds):
            # forms[0] is the NFKC form, what a new hash is of (if bcrypt can take it).
            outdated = stored_cost != rounds or candidate is not forms[0]
            return PasswordCheck(True, needs_rehash=outdated and forms[0] is not None)
    return PasswordCheck(False)


def checked(candidate, password_hash, stored_cost, rounds):
    """One bcrypt check of ``candidate``, topped up to the time of one at cost ``rounds``."""
    try:
        matched = off_the_event_loop(bcrypt.checkpw, candidate, password_hash.encode("ascii"))
    except ValueError:
        off_the_event_loop(bcrypt.checkpw, b"not the password", dummy_hash(rounds))
        return False
    equalize(stored_cost, rounds)
    return matched


def equalize(cost, rounds):
    """Spend what a check at cost ``rounds`` costs beyond one at ``cost``.

    bcrypt's work doubles with each unit of cost, so checks at costs
    cost, cost + 1, ..., rounds - 1 add up to 2**rounds - 2**cost: with the
    check already made at ``cost``, exactly one check at ``rounds``.
    """
    for padding_cost in range(cost, rounds):
        off_the_event_loop(bcrypt.hashpw, b"padding", bcrypt.gensalt(padding_cost))


def hash_cost(password_hash):
    match = _BCRYPT_HASH.fullmatch(password_hash) if isinstance(password_hash, str) else None
    return int(match.group(1)) if match else None


def issue_access_token(user, session_id, config, keys):
    """A signed access token; ``keys`` (keys.SharedSecret or keys.StoredKeys) gives the key and kid."""
    issued_at = int(time.time())
    claims = {
        "sub": str(user["id"]),
        "iat": issued_at,
        "exp": issued_at + config["ACCESS_TOKEN_TTL"],
        "jti": secrets.token_urlsafe(16),
        "iss": config["JWT_ISSUER"],
        "admin": bool(user["is_admin"]),
        "sid": str(session_id),
    }
    audience = config["JWT_AUDIENCE"]
    if audience:
        claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
    kid, key = keys.signing_key()
    return jwt.encode(claims, key, algorithm=keys.algorithm, headers={"kid": kid} if kid else None)


def decode_access_token(token, config, keys):
    """The claims of a valid token; raises jwt.InvalidTokenError otherwise."""
    claims, kid = verified_claims(token, keys, config["JWT_ISSUER"], config["JWT_AUDIENCE"])
    if not keys.still_trusts(kid):
        raise jwt.InvalidTokenError("the token's key has been withdrawn")
    check_times(claims, config["JWT_LEEWAY"])
    return claims


@functools.lru_cache(maxsize=1024)
def verified_claims(token, keys, issuer, audience):
    """Everything about a token that time cannot change, checked once per token: ``(claims, kid)``.

    The key is the one the ``kid`` header names among the server's own, and
    its algorithm is pinned (a token cannot choose ``none``, another HMAC size
    or HMAC over a public key); a key the token offers itself is refused. The
    signature, issuer and audience are verified, and every claim the server
    relies on is required: PyJWT accepts a token without ``exp`` unless told
    otherwise, and checks ``iss`` only when given an issuer. A client sends
    the same token on every request for its lifetime, so the result is
    cached; the times (check_times) and whether the key is still published
    are checked on every call, and the session and user are looked up in the
    database on every request.
    """
    header = jwt.get_unverified_header(token)
    if UNTRUSTED_HEADERS & header.keys():
        raise jwt.InvalidTokenError("a token cannot bring its own key")
    kid = header.get("kid")
    candidates = keys.verification_keys(kid)
    if not candidates:
        raise jwt.InvalidTokenError("the token names no key of this server")
    for key in candidates[:-1]:
        try:
            return checked_claims(token, key, keys.algorithm, issuer, audience), kid
        except jwt.InvalidSignatureError:
            pass
    return checked_claims(token, candidates[-1], keys.algorithm, issuer, audience), kid


def checked_claims(token, key, algorithm, issuer, audience):
    claims = jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        issuer=issuer,
        audience=list(audience) or None,
        options={
            "require": REQUIRED_CLAIMS,
            "verify_aud": bool(audience),
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        },
    )
    if not all(type(claims[name]) is int for name in ("iat", "exp")):
        raise jwt.InvalidTokenError("iat and exp must be integer seconds")
    if "nbf" in claims and not is_finite_number(claims["nbf"]):
        raise jwt.InvalidTokenError("nbf must be a finite number of seconds")
    for name in ("sub", "sid"):
        if not is_row_id(claims[name]):
            raise jwt.InvalidTokenError(f"{name} must be a row id written as a string")
    return claims


def check_times(claims, leeway):
    """exp must not be past, nor nbf or iat in the future, give or take ``leeway``."""
    now = time.time()
    if claims["exp"] <= now - leeway:
        raise jwt.ExpiredSignatureError("the token has expired")
    if claims.get("nbf", 0) > now + leeway or claims["iat"] > now + leeway:
        raise jwt.ImmatureSignatureError("the token is not valid yet")


def is_finite_number(value):
    """Python's json reads NaN and Infinity, which every comparison with a time lets pass."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def is_row_id(value):
    """A positive SQLite integer key written as a string: "1", not 1, "01" or " 1"."""
    return isinstance(value, str) and bool(_ROW_ID.fullmatch(value)) and int(value) <= MAX_ID
