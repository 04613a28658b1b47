"""Edges of what clients send: path ids, query filters, token syntax, odd paths, client addresses."""
import json
import time

import jwt
import pytest

from tests.helpers import PASSWORD, SECRET, assert_invalid_token, assert_problem, b64url, bearer, log_in, register

HOSTILE_HOST = "evil.example"


def create_pet(client, headers, **body):
    response = client.post("/pets", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pet_count(database):
    return database.execute("SELECT count(*) FROM pets").fetchone()[0]


# Path ids: ASCII digits only


@pytest.fixture
def pet_one(client, auth_headers):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")
    assert pet["id"] == 1
    return pet


# FULLWIDTH DIGIT ONE, ARABIC-INDIC DIGIT ONE, DEVANAGARI DIGIT ONE, MATHEMATICAL BOLD DIGIT ONE
UNICODE_ONES = ["\uff11", "\u0661", "\u0967", "\U0001d7cf", "0\uff11"]


@pytest.mark.parametrize("one", UNICODE_ONES)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_a_pet_id_of_unicode_digits_is_not_found(client, auth_headers, pet_one, database, method, one):
    response = client.open(f"/pets/{one}", method=method, json={"name": "Renamed"}, headers=auth_headers)

    assert_problem(response, 404)
    assert client.get("/pets/1", headers=auth_headers).get_json() == pet_one
    assert pet_count(database) == 1


@pytest.mark.parametrize("one", UNICODE_ONES)
def test_a_session_id_of_unicode_digits_is_not_found(client, auth_headers, database, one):
    session_id = database.execute("SELECT id FROM sessions").fetchone()["id"]
    assert session_id == 1

    response = client.delete(f"/users/me/sessions/{one}", headers=auth_headers)

    assert_problem(response, 404)
    assert client.get("/users/me", headers=auth_headers).status_code == 200


def test_an_ascii_pet_id_still_works(client, auth_headers, pet_one):
    assert client.get("/pets/1", headers=auth_headers).get_json() == pet_one
    assert client.get("/pets/0001", headers=auth_headers).get_json() == pet_one


# ?species= compares after the same trimming as stored values


@pytest.mark.parametrize("query", ["cat", "%20cat", "cat%20%20", "%09cat%0A", "%20%20cat%20"])
def test_species_filter_matches_after_trimming(client, auth_headers, query):
    cat = create_pet(client, auth_headers, name="Tom", species="  cat ")
    create_pet(client, auth_headers, name="Rex", species="dog")
    assert cat["species"] == "cat"

    response = client.get(f"/pets?species={query}", headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == [cat]


def test_species_filter_trimmed_in_the_next_link(client, auth_headers):
    cats = [create_pet(client, auth_headers, name=f"Tom {n}", species="cat") for n in range(3)]

    response = client.get("/pets?species=%20cat%20&limit=2", headers=auth_headers)

    assert response.get_json() == cats[:2]
    next_page = response.headers["Link"].split(">")[0].lstrip("<")
    assert client.get(next_page, headers=auth_headers).get_json() == cats[2:]


@pytest.mark.parametrize("query", ["", "%20", "%20%20%09"])
def test_species_filter_empty_after_trimming_is_a_validation_error(client, auth_headers, query):
    create_pet(client, auth_headers, name="Tom", species="cat")

    body = assert_problem(client.get(f"/pets?species={query}", headers=auth_headers), 422, "validation_error")

    assert body["errors"][0]["field"] == "species"


# Access tokens: nbf a finite number; three base64url segments without padding


def token_with(claims_json):
    """An HS256 token, signed with the server's secret, whose payload is ``claims_json`` verbatim."""
    signing_input = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64url(claims_json.encode())}"
    signature = jwt.api_jws.get_algorithm_by_name("HS256").sign(signing_input.encode(), SECRET.encode())
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture
def claims(client, auth_headers):
    """The claims of the logged-in user's real token (its sub and sid are live)."""
    return jwt.decode(auth_headers["Authorization"].split()[1], SECRET, algorithms=["HS256"])


def get_me(client, token):
    return client.get("/users/me", headers=bearer(token))


def claims_text(claims, **raw_values):
    """The claims as JSON, with ``raw_values`` written in verbatim (NaN, Infinity, 1e400)."""
    text = json.dumps(claims)[:-1]
    return text + "".join(f', "{name}": {value}' for name, value in raw_values.items()) + "}"


def test_a_token_made_by_token_with_is_accepted(client, claims):
    assert get_me(client, token_with(claims_text(claims, nbf=int(time.time()) - 10))).status_code == 200


@pytest.mark.parametrize("nbf", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_nbf_that_is_not_a_finite_number_is_refused(client, claims, nbf):
    assert_invalid_token(get_me(client, token_with(claims_text(claims, nbf=nbf))))


@pytest.mark.parametrize("claim", ["iat", "exp"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "1.5", "true", '"1"'])
def test_iat_and_exp_must_be_integers(client, claims, claim, value):
    claims = {name: value for name, value in claims.items() if name != claim}
    assert_invalid_token(get_me(client, token_with(claims_text(claims, **{claim: value}))))


def pad(token, segment, padding):
    segments = token.split(".")
    segments[segment] += padding
    return ".".join(segments)


@pytest.mark.parametrize(
    "segment, padding", [(2, "="), (2, "=="), (1, "="), (0, "="), (2, "===")]
)
def test_a_token_with_base64_padding_is_refused(client, auth_headers, segment, padding):
    token = auth_headers["Authorization"].split()[1]
    assert get_me(client, token).status_code == 200

    assert_invalid_token(get_me(client, pad(token, segment, padding)))


@pytest.mark.parametrize("change", [
    lambda token: token.replace("-", "+").replace("_", "/"),
    lambda token: token + ".",
    lambda token: "." + token,
    lambda token: token.replace(".", "..", 1),
    lambda token: token + "~",
])
def test_a_token_that_is_not_three_base64url_segments_is_refused(client, auth_headers, change):
    token = auth_headers["Authorization"].split()[1]
    while "-" not in token and "_" not in token:  # the first case needs a character to change
        token = log_in(client).access

    assert_invalid_token(get_me(client, change(token)))


# No redirects, and no response echoes the Host header


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/pets//1"),
        ("DELETE", "/pets//1"),
        ("GET", "//pets/1"),
        ("GET", "/pets/1/"),
        ("GET", "//users/me"),
        ("GET", "/users//me"),
        ("GET", "/my-pets/"),
        ("GET", "/health/"),
        ("POST", "/auth/"),
        ("GET", "/users/me/"),
    ],
)
def test_unrouted_paths_are_404_without_a_redirect(client, auth_headers, pet_one, database, method, path):
    response = client.open(path, method=method, headers={**auth_headers, "Host": HOSTILE_HOST})

    assert_problem(response, 404)
    assert "Location" not in response.headers
    assert HOSTILE_HOST not in str(response.headers) + response.get_data(as_text=True)
    assert pet_count(database) == 1


def test_responses_with_urls_do_not_echo_the_host(client, auth_headers):
    headers = {**auth_headers, "Host": HOSTILE_HOST}
    created = client.post("/pets", json={"name": "Rex"}, headers=headers)
    create_pet(client, auth_headers, name="Tom")
    page = client.get("/pets?limit=1", headers=headers)

    assert created.headers["Location"] == f"/pets/{created.get_json()['id']}"
    assert page.headers["Link"].startswith("</pets?")
    for response in (created, page):
        assert HOSTILE_HOST not in str(response.headers) + response.get_data(as_text=True)


# The throttle keys an IPv6 client by its /64, an IPv4-mapped address as IPv4

MAX_FAILURES = 3


@pytest.fixture
def throttled_client(make_app):
    app = make_app(LOGIN_MAX_FAILURES=MAX_FAILURES, LOGIN_LOCKOUT=60)
    client = app.test_client()
    register(client)
    return client


def log_in_from(client, address, password="not the password"):
    return client.post(
        "/auth",
        json={"username": "travis", "password": password},
        environ_overrides={"REMOTE_ADDR": address},
    )


def fail_from(client, addresses):
    for address in addresses:
        assert log_in_from(client, address).status_code == 401, address


@pytest.mark.parametrize(
    "guessers, next_address",
    [
        pytest.param(
            ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:abcd:ef01:2345:6789"],
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            id="ipv6-same-64",
        ),
        pytest.param(
            ["2001:DB8:1:2::1", "2001:0db8:0001:0002:0000:0000:0000:0002", "2001:db8:1:2::3"],
            "2001:db8:1:2::4",
            id="ipv6-spellings",
        ),
        pytest.param(["::ffff:10.0.0.9"] * MAX_FAILURES, "10.0.0.9", id="mapped-then-ipv4"),
        pytest.param(["10.0.0.9"] * MAX_FAILURES, "::ffff:10.0.0.9", id="ipv4-then-mapped"),
        pytest.param(["::ffff:10.0.0.9", "10.0.0.9", "::FFFF:0a00:0009"], "10.0.0.9", id="mixed"),
    ],
)
def test_the_throttle_counts_one_client_however_it_spells_its_address(throttled_client, guessers, next_address):
    fail_from(throttled_client, guessers)

    response = log_in_from(throttled_client, next_address, PASSWORD)

    assert_problem(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "guessers, other_address",
    [
        (["2001:db8:1:2::1"] * MAX_FAILURES, "2001:db8:1:3::1"),
        (["10.0.0.9"] * MAX_FAILURES, "10.0.0.10"),
        (["10.0.0.9"] * MAX_FAILURES, "::ffff:10.0.0.10"),
        (["::ffff:10.0.0.9"] * MAX_FAILURES, "2001:db8::a00:9"),
    ],
)
def test_the_throttle_keeps_other_clients_apart(throttled_client, guessers, other_address):
    fail_from(throttled_client, guessers)

    assert log_in_from(throttled_client, other_address, PASSWORD).status_code == 200


def test_a_success_from_another_address_in_the_64_resets_the_count(throttled_client):
    fail_from(throttled_client, ["2001:db8:1:2::1"] * (MAX_FAILURES - 1))
    assert log_in_from(throttled_client, "2001:db8:1:2::99", PASSWORD).status_code == 200

    fail_from(throttled_client, ["2001:db8:1:2::1"] * (MAX_FAILURES - 1))
    assert log_in_from(throttled_client, "2001:db8:1:2::1", PASSWORD).status_code == 200


def test_sessions_keep_the_full_client_address(throttled_client):
    address = "2001:db8:1:2:abcd:ef01:2345:6789"
    token = log_in_from(throttled_client, address, PASSWORD).get_json()["access_token"]

    sessions = throttled_client.get("/users/me/sessions", headers=bearer(token))

    assert [session["ip"] for session in sessions.get_json()] == [address]
