"""CORS: browsers on allowed origins can call the API and read its errors."""
import pytest

from jwt_server.config import ConfigError, cors_origins
from tests.helpers import log_in, register

ALLOWED = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def header_set(response, name):
    """The comma-separated values of header ``name``, lower-cased."""
    return {value.strip().lower() for value in response.headers.get(name, "").split(",") if value.strip()}


@pytest.fixture
def listed_client(make_app):
    """A client of an app that allows only https://app.example.com."""
    return make_app(CORS_ORIGINS=[ALLOWED]).test_client()


# The default, CORS_ORIGINS=*


@pytest.mark.parametrize(
    "path, method",
    [("/pets", "POST"), ("/pets", "GET"), ("/pets/1", "PATCH"), ("/pets/1", "DELETE"), ("/auth", "POST")],
)
def test_preflight_allows_any_origin_by_default(client, path, method):
    response = client.options(
        path, headers={**PREFLIGHT, "Origin": "https://anywhere.example", "Access-Control-Request-Method": method}
    )

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert {"authorization", "content-type"} <= header_set(response, "Access-Control-Allow-Headers")
    assert {method.lower(), "get", "post"} <= header_set(response, "Access-Control-Allow-Methods")
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_preflight_needs_no_token_and_has_no_body_error(client):
    response = client.options("/pets", headers={**PREFLIGHT, "Origin": ALLOWED})

    assert response.status_code in (200, 204)
    assert response.mimetype != "application/problem+json"
    assert "WWW-Authenticate" not in response.headers


def test_error_response_is_readable_cross_origin(client):
    response = client.get("/pets", headers={"Origin": "https://anywhere.example"})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = header_set(response, "Access-Control-Expose-Headers")
    assert {"location", "link", "www-authenticate"} <= exposed


@pytest.mark.parametrize(
    "method, path, kwargs, status",
    [
        ("get", "/nowhere", {}, 404),
        ("delete", "/health", {}, 405),
        ("post", "/users", {"data": "x" * (64 * 1024 + 1), "content_type": "application/json"}, 413),
        ("post", "/users", {"data": "x", "content_type": "text/plain"}, 415),
        ("post", "/users", {"json": {"username": "a"}}, 422),
    ],
)
def test_other_errors_carry_cors_headers(client, method, path, kwargs, status):
    response = getattr(client, method)(path, headers={"Origin": "https://anywhere.example"}, **kwargs)

    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_created_pet_location_and_next_link_are_exposed(client):
    register(client)
    headers = {**log_in(client).headers, "Origin": "https://anywhere.example"}

    created = client.post("/pets", json={"name": "Bunny"}, headers=headers)
    client.post("/pets", json={"name": "Rex"}, headers=headers)
    listed = client.get("/pets?limit=1", headers=headers)

    for response in (created, listed):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert {"location", "link"} <= header_set(response, "Access-Control-Expose-Headers")
    assert "Location" in created.headers
    assert "Link" in listed.headers


# An explicit list of origins


@pytest.mark.parametrize("origin", [ALLOWED, "HTTPS://APP.EXAMPLE.COM", "https://App.Example.Com"])
def test_listed_origin_is_echoed_with_vary_on_preflight(listed_client, origin):
    response = listed_client.options("/pets", headers={**PREFLIGHT, "Origin": origin})

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "origin" in header_set(response, "Vary")
    assert {"authorization", "content-type"} <= header_set(response, "Access-Control-Allow-Headers")


@pytest.mark.parametrize("origin", [ALLOWED, "HTTPS://APP.EXAMPLE.COM"])
def test_listed_origin_is_echoed_with_vary_on_actual_responses(listed_client, origin):
    response = listed_client.get("/pets", headers={"Origin": origin})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "origin" in header_set(response, "Vary")
    assert {"location", "link"} <= header_set(response, "Access-Control-Expose-Headers")


FOREIGN_ORIGINS = [
    "https://evil.example",
    "https://app.example.com.evil.example",
    "https://app.example.co",
    "https://xapp.example.com",
    "http://app.example.com",
    "https://app.example.com:8443",
    "https://app.example.com.",
    "https://app-example.com",
    "https://appXexample.com",
    "null",
]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_gets_no_allow_origin_on_preflight(listed_client, origin):
    response = listed_client.options("/pets", headers={**PREFLIGHT, "Origin": origin})

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_gets_no_allow_origin_on_actual_responses(listed_client, origin):
    response = listed_client.get("/pets", headers={"Origin": origin})

    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {}],
    ids=["foreign origin", "no origin"],
)
def test_with_a_list_every_answer_varies_on_origin(listed_client, headers):
    """A cache must not hand an answer made for one origin (or none) to another."""
    response = listed_client.get("/health", headers=headers)

    assert response.status_code == 200
    assert "origin" in header_set(response, "Vary")


# Reading CORS_ORIGINS


@pytest.mark.parametrize(
    "value, origins",
    [
        ("*", "*"),
        (" * ", "*"),
        ("https://a.example", ["https://a.example"]),
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ("https://a.example,https://b.example:8443,", ["https://a.example", "https://b.example:8443"]),
        ("http://localhost:5173", ["http://localhost:5173"]),
    ],
)
def test_cors_origins_parses_a_star_or_a_list(value, origins):
    assert cors_origins(value) == origins


@pytest.mark.parametrize(
    "value",
    [
        "https://a.example/path",
        "https://a.example/",
        "https://a.example?x=1",
        "*.example.com",
        "https://*.example.com",
        "https://user@a.example",
        "https://a.example,*",
        "*,https://a.example",
        "a.example",
        "https://a.example b.example",
        "",
        " , ",
    ],
)
def test_cors_origins_rejects_anything_but_exact_origins(value):
    with pytest.raises(ConfigError) as raised:
        cors_origins(value)

    assert "CORS_ORIGINS" in str(raised.value)
