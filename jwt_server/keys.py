"""Signing keys: HS256's shared secret, or asymmetric keys kept in the database.

With ``JWT_ALGORITHM`` EdDSA, ES256 or RS256 the server makes its own key
pairs and stores them in ``signing_keys``, the private part sealed with
AES-GCM under a key derived (HKDF) from ``JWT_SECRET``, so that every worker
and host signs with the same keys and a copy of the database alone signs
nothing. Each worker holds the published keys in memory and reloads them
from the database every few seconds (and, at most once a second, when a
token names a key it does not know), which is also when automatic rotation
is checked: no request waits on the database for a key.

A rotation publishes the new key at once and lets it sign only after
``JWKS_MAX_AGE``, when every verifier caching the JWKS has seen it; the old
key stays published until the last token it signed has expired
(``ACCESS_TOKEN_TTL`` + ``JWT_LEEWAY`` after it stopped signing).
"""
import base64
import functools
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import click
import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from flask.cli import with_appcontext

from . import signing_keys
from .config import ConfigError
from .db import connect, get_db

GENERATORS = {
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
# RFC 7638: the members a key's thumbprint is computed over.
THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
RELOAD_SECONDS = 5
UNKNOWN_KID_RELOAD_SECONDS = 1
DAY = 86400
_KID = re.compile(r"[A-Za-z0-9_-]{43}")


class KeysUnreadable(Exception):
    """A stored private key that neither JWT_SECRET nor JWT_SECRET_PREVIOUS opens."""


# Key material


def public_jwk(private_key, algorithm):
    """The public half as a JWK, with its RFC 7638 thumbprint as ``kid``."""
    jwk = jwt.get_algorithm_by_name(algorithm).to_jwk(private_key.public_key(), as_dict=True)
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashes.Hash(hashes.SHA256())
    digest.update(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    kid = base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


@functools.lru_cache(maxsize=8)
def sealing_key(secret):
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jwt-server signing-key sealing")
    return AESGCM(hkdf.derive(secret.encode("utf-8", "surrogateescape")))


def seal(private_key, kid, secret):
    """PKCS#8 of ``private_key``, AES-GCM-sealed (the kid as associated data), in base64."""
    plain = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    return base64.b64encode(nonce + sealing_key(secret).encrypt(nonce, plain, kid.encode())).decode()


def unseal(sealed, kid, secrets):
    """``(private key, the secret that opened it)``; raises KeysUnreadable."""
    data = base64.b64decode(sealed)
    for secret in secrets:
        try:
            plain = sealing_key(secret).decrypt(data[:12], data[12:], kid.encode())
        except InvalidTag:
            continue
        return serialization.load_der_private_key(plain, password=None), secret
    raise KeysUnreadable(
        f"JWT_SECRET cannot open the signing key {kid} stored in the database: start with the secret "
        "the keys were made under, or with it as JWT_SECRET_PREVIOUS while JWT_SECRET rolls over."
    )


def new_key(algorithm, secret, activates_at):
    """A new key pair as a signing_keys row."""
    private_key = GENERATORS[algorithm]()
    jwk = public_jwk(private_key, algorithm)
    return {
        "kid": jwk["kid"],
        "algorithm": algorithm,
        "public_jwk": json.dumps(jwk),
        "private_key": seal(private_key, jwk["kid"], secret),
        "created_at": int(time.time()),
        "activates_at": activates_at,
    }


# The keys a worker signs and verifies with


def accepted_secrets(config):
    """JWT_SECRET, then JWT_SECRET_PREVIOUS if set: the first signs and seals; each verifies and opens."""
    previous = config["JWT_SECRET_PREVIOUS"]
    return [config["JWT_SECRET"], previous] if previous else [config["JWT_SECRET"]]


class SharedSecret:
    """HS256: ``JWT_SECRET`` signs and verifies; ``JWT_SECRET_PREVIOUS`` only verifies."""

    algorithm = "HS256"

    def __init__(self, config):
        self.secrets = accepted_secrets(config)

    def signing_key(self):
        return None, self.secrets[0]

    def verification_keys(self, kid):
        return self.secrets if kid is None else []

    def still_trusts(self, kid):
        return True

    def jwks(self, connection):
        return {"keys": []}


@dataclass(frozen=True)
class Published:
    """The keys of one load from the database."""

    public_keys: dict = field(default_factory=dict)  # kid: public key, every published key
    signers: list = field(default_factory=list)  # [(activates_at, kid, private key)], by activation


class StoredKeys:
    """EdDSA, ES256 or RS256: the keys in the database, as this worker last loaded them."""

    def __init__(self, config):
        self.algorithm = config["JWT_ALGORITHM"]
        self.database = config["DATABASE"]
        self.secrets = accepted_secrets(config)
        self.max_age = config["JWKS_MAX_AGE"]
        self.token_lifetime = config["ACCESS_TOKEN_TTL"] + config["JWT_LEEWAY"]
        self.rotation_days = config["SIGNING_KEY_ROTATION_DAYS"]
        # A new key signs JWKS_MAX_AGE after it appears: every worker must have
        # loaded it by then.
        self.reload_seconds = min(RELOAD_SECONDS, self.max_age / 2)
        self.private_keys = {}  # (kid, sealed): private key, so a reload unseals only new keys
        self.lock = threading.Lock()
        self.loaded_at = float("-inf")
        self.published = Published()

    def signing_key(self):
        """The key that signs now: the one activated last."""
        self.reload_if_older_than(self.reload_seconds)
        now = time.time()
        signers = self.published.signers
        activated = [signer for signer in signers if signer[0] <= now] or signers[:1]
        _, kid, private_key = activated[-1]
        return kid, private_key

    def verification_keys(self, kid):
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            return []
        if kid not in self.published.public_keys:
            self.reload_if_older_than(UNKNOWN_KID_RELOAD_SECONDS)
        key = self.published.public_keys.get(kid)
        return [key] if key else []

    def still_trusts(self, kid):
        """Whether ``kid`` is still published; cheap, for tokens verified before."""
        self.reload_if_older_than(self.reload_seconds)
        return kid in self.published.public_keys

    def jwks(self, connection):
        """Read from the database on every call: a new key is published the moment it is stored."""
        return {"keys": [json.loads(row["public_jwk"]) for row in self.published_rows(connection)]}

    def reload_if_older_than(self, seconds):
        if time.monotonic() - self.loaded_at < seconds:
            return
        with self.lock:
            if time.monotonic() - self.loaded_at >= seconds:
                self.published = self.load()
                self.loaded_at = time.monotonic()

    def load(self):
        connection = connect(self.database)
        try:
            rows = self.published_rows(connection)
            if self.add_or_rotate(connection, rows):
                rows = self.published_rows(connection)
            now = time.time()
            signers = [
                (row["activates_at"], row["kid"], self.private_key(connection, row))
                for row in rows
                if row["retires_at"] is None or row["retires_at"] > now
            ]
        finally:
            connection.close()
        signing = {kid for _, kid, _ in signers}
        self.private_keys = {cached: key for cached, key in self.private_keys.items() if cached[0] in signing}
        public_keys = {row["kid"]: jwt.PyJWK(json.loads(row["public_jwk"])).key for row in rows}
        return Published(public_keys, signers)

    def published_rows(self, connection):
        return signing_keys.published(connection, self.algorithm, int(time.time()) - self.token_lifetime)

    def add_or_rotate(self, connection, rows):
        """Add the first key of this algorithm, signing at once, or the rotation that is due.

        Checked against the rows just loaded, so that a key pair is made only
        when one is needed; the writes are conditional, so of several workers
        doing this at once exactly one adds a key. True if anything was tried.
        """
        now = int(time.time())
        newest = [row for row in rows if row["retires_at"] is None]
        if not newest:
            signing_keys.add_first(connection, new_key(self.algorithm, self.secrets[0], now))
            return True
        due = now - self.rotation_days * DAY
        if self.rotation_days and newest[0]["activates_at"] <= due:
            self.rotate(connection, activated_before=due)
            return True
        return False

    def rotate(self, connection, activated_before=None):
        """Add the next key, signing in JWKS_MAX_AGE; its row, or None if another worker rotated first."""
        now = time.time()
        # Whole seconds, rounded up: the new key never signs before JWKS_MAX_AGE has passed.
        key = new_key(self.algorithm, self.secrets[0], math.ceil(now) + self.max_age)
        if activated_before is None:
            activated_before = key["activates_at"]
        rotated = signing_keys.rotate(connection, key, activated_before, int(now) - self.token_lifetime)
        return key if rotated else None

    def private_key(self, connection, row):
        """The row's private key, unsealed once; one sealed under the previous secret is resealed."""
        cached = (row["kid"], row["private_key"])
        if cached not in self.private_keys:
            private_key, secret = unseal(row["private_key"], row["kid"], self.secrets)
            if secret != self.secrets[0]:
                signing_keys.reseal(
                    connection, row["kid"], row["private_key"], seal(private_key, row["kid"], self.secrets[0])
                )
            self.private_keys[cached] = private_key
        return self.private_keys[cached]


def current():
    """The app's keys: a SharedSecret or StoredKeys."""
    return current_app.extensions["jwt_server.keys"]


def load_keys(config):
    """The keys of ``JWT_ALGORITHM``, loaded (the first made if there is none); ConfigError if unreadable."""
    if config["JWT_ALGORITHM"] == "HS256":
        return SharedSecret(config)
    keys = StoredKeys(config)
    try:
        keys.reload_if_older_than(0)
    except KeysUnreadable as error:
        raise ConfigError(str(error)) from None
    return keys


def init_app(app):
    app.extensions["jwt_server.keys"] = load_keys(app.config)
    app.cli.add_command(rotate_signing_key_command)
    app.cli.add_command(list_signing_keys_command)


# Commands


@click.command("rotate-signing-key")
@with_appcontext
def rotate_signing_key_command():
    """Add a new signing key: published now, signing after JWKS_MAX_AGE."""
    keys = current()
    if not isinstance(keys, StoredKeys):
        raise click.ClickException(
            "JWT_ALGORITHM is HS256, which has no signing keys to rotate: "
            "roll JWT_SECRET over with JWT_SECRET_PREVIOUS instead."
        )
    key = keys.rotate(get_db())
    if key is None:
        raise click.ClickException("Another process rotated the key at this moment; see list-signing-keys.")
    starts = timestamp(key["activates_at"])
    click.echo(f"New {keys.algorithm} signing key {key['kid']}: published now, signing from {starts}.")


LIST_HEADINGS = ("kid", "algorithm", "state", "created", "signs from", "signs until", "published until")


@click.command("list-signing-keys")
@with_appcontext
def list_signing_keys_command():
    """Each stored key: kid, algorithm, state (next, active, retiring), dates."""
    rows = signing_keys.all_keys(get_db())
    if not rows:
        click.echo(f"No signing keys are stored (JWT_ALGORITHM is {current_app.config['JWT_ALGORITHM']}).")
        return
    lines = [LIST_HEADINGS] + [key_line(row, current_app.config, time.time()) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(LIST_HEADINGS))]
    for line in lines:
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


def key_line(row, config, now):
    """A key's kid, algorithm, state and dates; keys of another algorithm than JWT_ALGORITHM are unused."""
    withdrawn_at = None
    if row["retires_at"] is not None:
        withdrawn_at = row["retires_at"] + config["ACCESS_TOKEN_TTL"] + config["JWT_LEEWAY"]
    state = "unused"
    if row["algorithm"] == config["JWT_ALGORITHM"]:
        state = key_state(now, row["activates_at"], row["retires_at"], withdrawn_at)
    dates = (row["created_at"], row["activates_at"], row["retires_at"], withdrawn_at)
    return (row["kid"], row["algorithm"], state, *map(timestamp, dates))


def key_state(now, activates_at, retires_at, withdrawn_at):
    if now < activates_at:
        return "next"
    if retires_at is None or now < retires_at:
        return "active"
    return "retiring" if now < withdrawn_at else "withdrawn"


def timestamp(seconds):
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
