"""Signing keys: the algorithms, the JWKS and metadata, rotation, secrets, audiences."""
import base64
import json
import sqlite3
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from jwt_server.config import ConfigError
from jwt_server.keys import KeysUnreadable, public_jwk, unseal
from tests.helpers import SECRET, assert_problem, build_app, log_in, register

OTHER_SECRET = "a-different-secret-that-is-32-bytes-long"
ASYMMETRIC = ["EdDSA", "ES256", "RS256"]
PUBLIC_MEMBERS = {"kty", "kid", "alg", "use", "crv", "x", "y", "n", "e", "key_ops"}


def token_of(tokens):
    return tokens.access


def logged_in_token(client, username="travis"):
    register(client, username)
    return token_of(log_in(client, username))


def get_me(client, token):
    return client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


def jwks(client):
    return client.get("/.well-known/jwks.json").get_json()["keys"]


def stored_keys(app):
    connection = sqlite3.connect(app.config["DATABASE"])
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute("SELECT * FROM signing_keys ORDER BY activates_at")]
    finally:
        connection.close()


def change_keys(app, sql, *parameters):
    connection = sqlite3.connect(app.config["DATABASE"])
    with connection:
        connection.execute(sql, parameters)
    connection.close()


def wait_past(seconds):
    time.sleep(max(seconds - time.time(), 0) + 0.1)


# HS256, the default


def test_hs256_tokens_name_no_key_and_the_jwks_is_empty_but_cacheable(client):
    token = logged_in_token(client)

    response = client.get("/.well-known/jwks.json")

    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert response.status_code == 200
    assert response.get_json() == {"keys": []}
    assert response.headers["Cache-Control"] == "public, max-age=300"


def test_hs256_token_with_a_kid_is_refused(client):
    token = logged_in_token(client)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})

    forged = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "anything"})

    assert_problem(get_me(client, forged), 401, "invalid_token")


def test_previous_secret_verifies_hs256_tokens_but_never_signs(tmp_path):
    database = tmp_path / "keys.sqlite"
    old_client = build_app(database).test_client()
    old_token = logged_in_token(old_client)
    rolled = build_app(database, JWT_SECRET=OTHER_SECRET, JWT_SECRET_PREVIOUS=SECRET).test_client()

    new_token = token_of(log_in(rolled))

    assert get_me(rolled, old_token).status_code == 200
    assert jwt.decode(new_token, OTHER_SECRET, algorithms=["HS256"])["sub"] == "1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new_token, SECRET, algorithms=["HS256"])
    # Once the roll-over is over, the old secret's tokens are refused.
    done = build_app(database, JWT_SECRET=OTHER_SECRET).test_client()
    assert_problem(get_me(done, old_token), 401, "invalid_token")
    assert get_me(done, new_token).status_code == 200


def test_rotating_with_hs256_says_what_to_do_instead(runner):
    result = runner.invoke(args=["rotate-signing-key"])

    assert result.exit_code == 1
    assert "JWT_SECRET_PREVIOUS" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_listing_keys_with_hs256_says_there_are_none(runner):
    result = runner.invoke(args=["list-signing-keys"])

    assert result.exit_code == 0
    assert result.output == "No signing keys are stored (JWT_ALGORITHM is HS256).\n"


# Asymmetric algorithms


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_token_names_its_key_and_any_verifier_checks_it_with_the_jwks_alone(tmp_path, algorithm):
    client = build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM=algorithm).test_client()
    token = logged_in_token(client)

    keys = jwks(client)

    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    assert [key["kid"] for key in keys] == [header["kid"]]
    assert set(keys[0]) <= PUBLIC_MEMBERS and keys[0]["use"] == "sig" and keys[0]["alg"] == algorithm
    public_key = jwt.PyJWK(keys[0]).key
    assert jwt.decode(token, public_key, algorithms=[algorithm], issuer="jwt-server")["sub"] == "1"
    assert get_me(client, token).status_code == 200


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_the_private_key_is_stored_sealed_under_the_secret_and_bound_to_its_kid(tmp_path, algorithm):
    app = build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM=algorithm)

    [row] = stored_keys(app)

    private_key, _ = unseal(row["private_key"], row["kid"], [SECRET])
    assert public_jwk(private_key, algorithm) == json.loads(row["public_jwk"]) == jwks(app.test_client())[0]
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert base64.b64encode(pkcs8).decode()[-40:] not in row["private_key"]
    with pytest.raises(KeysUnreadable):
        unseal(row["private_key"], row["kid"], [OTHER_SECRET])
    with pytest.raises(KeysUnreadable):
        unseal(row["private_key"], "A" * 43, [SECRET])


def test_every_worker_of_a_database_signs_with_the_same_first_key(tmp_path):
    database = tmp_path / "keys.sqlite"
    apps = []
    threads = [
        threading.Thread(target=lambda: apps.append(build_app(database, JWT_ALGORITHM="EdDSA"))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(apps) == 4
    assert len(stored_keys(apps[0])) == 1
    register(apps[0].test_client())
    kids = {jwt.get_unverified_header(token_of(log_in(app.test_client())))["kid"] for app in apps}
    assert kids == {stored_keys(apps[0])[0]["kid"]}


def test_a_token_of_another_algorithm_than_configured_is_refused(tmp_path):
    database = tmp_path / "keys.sqlite"
    eddsa_token = logged_in_token(build_app(database, JWT_ALGORITHM="EdDSA").test_client())
    es256 = build_app(database, JWT_ALGORITHM="ES256").test_client()

    assert_problem(get_me(es256, eddsa_token), 401, "invalid_token")
    assert jwt.get_unverified_header(token_of(log_in(es256)))["alg"] == "ES256"
    assert {key["alg"] for key in jwks(es256)} == {"ES256"}


# Secrets


def test_a_secret_that_cannot_open_the_keys_refuses_to_start_and_makes_no_key(tmp_path):
    database = tmp_path / "keys.sqlite"
    before = stored_keys(build_app(database, JWT_ALGORITHM="EdDSA"))

    with pytest.raises(ConfigError) as refused:
        build_app(database, JWT_ALGORITHM="EdDSA", JWT_SECRET=OTHER_SECRET)

    message = str(refused.value)
    assert message.startswith("jwt-server: configuration error: JWT_SECRET cannot open the signing key ")
    assert before[0]["kid"] in message and "\n" not in message
    assert OTHER_SECRET not in message and SECRET not in message
    assert stored_keys(build_app(database, JWT_ALGORITHM="EdDSA")) == before


def test_previous_secret_opens_the_keys_which_are_resealed_under_the_new_one(tmp_path):
    database = tmp_path / "keys.sqlite"
    old_client = build_app(database, JWT_ALGORITHM="ES256").test_client()
    old_token = logged_in_token(old_client)
    [before] = stored_keys(old_client.application)

    rolled = build_app(database, JWT_ALGORITHM="ES256", JWT_SECRET=OTHER_SECRET, JWT_SECRET_PREVIOUS=SECRET)

    [after] = stored_keys(rolled)
    assert after["kid"] == before["kid"] and after["private_key"] != before["private_key"]
    assert get_me(rolled.test_client(), old_token).status_code == 200
    # The new secret alone now opens the key; the old one no longer does.
    assert build_app(database, JWT_ALGORITHM="ES256", JWT_SECRET=OTHER_SECRET)
    with pytest.raises(ConfigError):
        build_app(database, JWT_ALGORITHM="ES256")


# Rotation


def test_rotation_publishes_at_once_signs_after_max_age_and_withdraws_after_the_last_token(tmp_path):
    app = build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM="EdDSA", JWKS_MAX_AGE=1, ACCESS_TOKEN_TTL=4)
    client, runner = app.test_client(), app.test_cli_runner()
    old_token = logged_in_token(client)
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    rotated_at = time.time()
    rotated = runner.invoke(args=["rotate-signing-key"])

    assert rotated.exit_code == 0, rotated.output
    [old, new] = stored_keys(app)
    assert rotated.output.startswith(f"New EdDSA signing key {new['kid']}: published now, signing from ")
    assert [key["kid"] for key in jwks(client)] == [old_kid, new["kid"]]
    assert jwt.get_unverified_header(token_of(log_in(client)))["kid"] == old_kid
    assert old["retires_at"] == new["activates_at"] >= rotated_at + 1

    wait_past(new["activates_at"])
    new_token = token_of(log_in(client))
    assert jwt.get_unverified_header(new_token)["kid"] == new["kid"]
    assert get_me(client, old_token).status_code == 200
    assert [key["kid"] for key in jwks(client)] == [old_kid, new["kid"]]

    wait_past(old["retires_at"] + 4)
    assert [key["kid"] for key in jwks(client)] == [new["kid"]]
    assert_problem(get_me(client, old_token), 401, "invalid_token")
    assert get_me(client, token_of(log_in(client))).status_code == 200


def listed_states(runner):
    result = runner.invoke(args=["list-signing-keys"])
    assert result.exit_code == 0, result.output
    heading, *lines = result.output.splitlines()
    assert heading.split() == ["kid", "algorithm", "state", "created", "signs", "from", "signs", "until", "published",
                               "until"]
    return [line.split()[:3] for line in lines]


def test_list_signing_keys_shows_next_active_and_retiring(tmp_path):
    app = build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM="ES256", JWKS_MAX_AGE=1, ACCESS_TOKEN_TTL=60)
    runner = app.test_cli_runner()
    first = stored_keys(app)[0]["kid"]
    assert listed_states(runner) == [[first, "ES256", "active"]]

    runner.invoke(args=["rotate-signing-key"])
    second = stored_keys(app)[1]
    assert listed_states(runner) == [[first, "ES256", "active"], [second["kid"], "ES256", "next"]]

    wait_past(second["activates_at"])
    assert listed_states(runner) == [[first, "ES256", "retiring"], [second["kid"], "ES256", "active"]]


def test_automatic_rotation_is_done_once_by_the_first_worker_to_find_it_due(tmp_path):
    database = tmp_path / "keys.sqlite"
    settings = {"JWT_ALGORITHM": "EdDSA", "SIGNING_KEY_ROTATION_DAYS": 1, "JWKS_MAX_AGE": 1}
    workers = [build_app(database, **settings) for _ in range(4)]
    token = logged_in_token(workers[0].test_client())
    change_keys(workers[0], "UPDATE signing_keys SET activates_at = activates_at - 86400")
    time.sleep(0.6)  # each worker reloads its keys every JWKS_MAX_AGE / 2 seconds when it uses them

    threads = [threading.Thread(target=get_me, args=(worker.test_client(), token)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    old, new = stored_keys(workers[0])
    assert old["retires_at"] == new["activates_at"] and new["retires_at"] is None
    assert new["activates_at"] - new["created_at"] in (1, 2)
    assert len(jwks(workers[3].test_client())) == 2


def test_no_automatic_rotation_before_it_is_due(tmp_path):
    settings = {"JWT_ALGORITHM": "EdDSA", "SIGNING_KEY_ROTATION_DAYS": 1, "JWKS_MAX_AGE": 1}
    app = build_app(tmp_path / "keys.sqlite", **settings)
    token = logged_in_token(app.test_client())
    change_keys(app, "UPDATE signing_keys SET activates_at = activates_at - 86400 + 60")
    time.sleep(0.6)

    assert get_me(app.test_client(), token).status_code == 200

    assert len(stored_keys(app)) == 1


# Audiences


@pytest.fixture
def audience_app(tmp_path):
    return build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM="EdDSA", JWT_AUDIENCE=("pets-api", "billing-api"))


def resigned(app, token, **changes):
    """The token's claims with ``changes`` (None removes one), signed with the app's own key."""
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    kid, key = app.extensions["jwt_server.keys"].signing_key()
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def test_every_audience_is_written_to_aud(audience_app):
    token = logged_in_token(audience_app.test_client())

    assert jwt.decode(token, options={"verify_signature": False})["aud"] == ["pets-api", "billing-api"]


@pytest.mark.parametrize("aud", ["billing-api", ["other", "pets-api"], ["pets-api"]])
def test_a_token_for_one_of_the_audiences_is_accepted(audience_app, aud):
    client = audience_app.test_client()
    token = logged_in_token(client)

    assert get_me(client, resigned(audience_app, token, aud=aud)).status_code == 200


@pytest.mark.parametrize("aud", [None, "other", ["other", "another"], [], "", "pets-api ", ["PETS-API"], 7])
def test_a_token_for_another_audience_or_none_is_refused(audience_app, aud):
    client = audience_app.test_client()
    token = logged_in_token(client)

    forged = resigned(audience_app, token, aud=aud)

    assert_problem(get_me(client, forged), 401, "invalid_token")


def test_without_an_audience_setting_aud_is_neither_written_nor_checked(tmp_path):
    app = build_app(tmp_path / "keys.sqlite", JWT_ALGORITHM="EdDSA")
    client = app.test_client()
    token = logged_in_token(client)

    assert "aud" not in jwt.decode(token, options={"verify_signature": False})
    assert get_me(client, resigned(app, token, aud="anyone")).status_code == 200


# Metadata


def test_metadata_names_the_issuer_and_absolute_urls_from_the_request(tmp_path):
    client = build_app(tmp_path / "keys.sqlite", JWT_ISSUER="https://auth.example.com").test_client()

    response = client.get("/.well-known/oauth-authorization-server", base_url="http://127.0.0.1:8000")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.get_json() == {
        "issuer": "https://auth.example.com",
        "jwks_uri": "http://127.0.0.1:8000/.well-known/jwks.json",
        "token_endpoint": "http://127.0.0.1:8000/auth",
    }


def test_metadata_behind_a_trusted_proxy_uses_its_forwarded_scheme_and_host(tmp_path):
    client = build_app(tmp_path / "keys.sqlite", TRUSTED_PROXIES=1, JWKS_MAX_AGE=60).test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com", "X-Forwarded-For": "10.0.0.9"}

    response = client.get("/.well-known/oauth-authorization-server", headers=forwarded)

    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.get_json()["jwks_uri"] == "https://api.example.com/.well-known/jwks.json"
    assert response.get_json()["token_endpoint"] == "https://api.example.com/auth"


def test_metadata_ignores_forwarded_headers_without_a_trusted_proxy(client):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}

    body = client.get("/.well-known/oauth-authorization-server", headers=forwarded).get_json()

    assert body["jwks_uri"] == "http://localhost/.well-known/jwks.json"


def test_metadata_with_a_hostile_host_header_uses_the_servers_address(client):
    response = client.get("/.well-known/oauth-authorization-server", headers={"Host": "evil.example/<script>"})

    assert response.status_code == 200
    assert "evil" not in response.get_data(as_text=True)
    assert response.get_json()["token_endpoint"] == "http://localhost:80/auth"
