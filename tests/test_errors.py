"""Every error is a problem document; health checks; headers on every response."""
import logging
import os
import re
import sqlite3

import pytest

from tests.helpers import PASSWORD, assert_problem, log_in, register

MAX_BODY = 64 * 1024
GENERATED_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


# Routing errors


@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize("path", ["/nothing-here", "/pets/abc", "/users/me/nope", "/"])
def test_unknown_url_is_a_404_problem(client, method, path):
    assert_problem(getattr(client, method)(path), 404, "not_found")


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("delete", "/health", {"GET"}),
        ("post", "/my-pets", {"GET"}),
        ("put", "/pets", {"GET", "POST"}),
        ("get", "/auth", {"POST"}),
        ("post", "/pets/1", {"GET", "PATCH", "PUT", "DELETE"}),
    ],
)
def test_wrong_method_is_a_405_problem_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)

    assert_problem(response, 405, "method_not_allowed")
    listed = {name.strip() for name in response.headers["Allow"].split(",")}
    assert allowed <= listed
    assert listed <= allowed | {"HEAD", "OPTIONS"}


# Request bodies


def pets_headers(client):
    register(client)
    return log_in(client).headers


BODY_ROUTES = ["/users", "/auth", "/pets"]


def headers_for(client, path):
    return pets_headers(client) if path == "/pets" else {}


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_body_over_64_kib_is_a_413_problem(client, database, path):
    headers = headers_for(client, path)
    pets_before = database.execute("SELECT count(*) FROM pets").fetchone()[0]
    users_before = database.execute("SELECT count(*) FROM users").fetchone()[0]
    data = '{"username": "bigbody", "password": "%s", "name": "x"}' % ("p" * MAX_BODY)

    response = client.post(path, data=data, content_type="application/json", headers=headers)

    assert_problem(response, 413, "payload_too_large")
    assert database.execute("SELECT count(*) FROM pets").fetchone()[0] == pets_before
    assert database.execute("SELECT count(*) FROM users").fetchone()[0] == users_before


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_body_of_exactly_64_kib_is_read(client, path):
    headers = headers_for(client, path)
    prefix = '{"username": "ab", "password": "", "name": "'
    data = prefix + "x" * (MAX_BODY - len(prefix) - 2) + '"}'
    assert len(data.encode()) == MAX_BODY

    response = client.post(path, data=data, content_type="application/json", headers=headers)

    assert_problem(response, 422, "validation_error")


NON_JSON_BODIES = [
    pytest.param({"data": '{"username": "travis"}', "content_type": "text/plain"}, id="text/plain"),
    pytest.param(
        {"data": {"username": "travis", "password": PASSWORD, "name": "Bunny"}, "content_type": "multipart/form-data"},
        id="multipart",
    ),
    pytest.param({"data": b"\x00\x01", "content_type": "application/octet-stream"}, id="octet-stream"),
    pytest.param({"data": "<pet/>", "content_type": "application/xml"}, id="xml"),
]


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("body", NON_JSON_BODIES)
def test_non_json_body_is_a_415_problem(client, path, body):
    headers = headers_for(client, path)

    assert_problem(client.post(path, headers=headers, **body), 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/users", "/pets"])
def test_form_body_is_a_415_problem_where_forms_are_not_accepted(client, database, path):
    headers = headers_for(client, path)
    form = {"username": "formuser", "password": PASSWORD, "name": "Bunny"}

    response = client.post(path, data=form, headers=headers)

    assert_problem(response, 415, "unsupported_media_type")
    assert database.execute("SELECT count(*) FROM users WHERE username = 'formuser'").fetchone()[0] == 0
    assert database.execute("SELECT count(*) FROM pets").fetchone()[0] == 0


def test_form_body_logs_in_on_auth(client):
    register(client)

    response = client.post("/auth", data={"username": "travis", "password": PASSWORD})

    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize(
    "data",
    [
        pytest.param('{"name": ', id="truncated"),
        pytest.param("{'name': 'Bunny'}", id="single quotes"),
        pytest.param('{"name": "Bunny",}', id="trailing comma"),
        pytest.param("not json", id="words"),
        pytest.param(b'{"name": "Bunny\xff\xfe"}', id="non-UTF-8 bytes"),
        pytest.param(b'\xc3\x28', id="invalid UTF-8 sequence"),
        pytest.param("[" * 20000, id="20000 nested arrays"),
        pytest.param('{"a":' * 13000, id="13000 nested objects (65000 bytes)"),
        pytest.param('{"a":' * 6000 + "1" + "}" * 6000, id="6000 nested closed objects"),
        pytest.param("[" * 20000 + "]" * 20000, id="20000 nested closed arrays"),
    ],
)
def test_malformed_json_is_a_400_problem(client, database, path, data):
    headers = headers_for(client, path)

    response = client.post(path, data=data, content_type="application/json", headers=headers)

    assert_problem(response, 400)
    assert database.execute("SELECT count(*) FROM pets").fetchone()[0] == 0


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("data", ['["travis", "password"]', '"travis"', "42", "null", "true"])
def test_json_body_that_is_not_an_object_is_a_400_problem(client, path, data):
    headers = headers_for(client, path)

    response = client.post(path, data=data, content_type="application/json", headers=headers)

    body = assert_problem(response, 400, "invalid_body")
    assert "JSON object" in body["detail"]


def test_empty_body_without_content_type_on_pets_is_a_422_not_a_415(client, database):
    headers = pets_headers(client)

    response = client.post("/pets", headers=headers)

    body = assert_problem(response, 422, "validation_error")
    assert "name" in [error["field"] for error in body["errors"]]
    assert database.execute("SELECT count(*) FROM pets").fetchone()[0] == 0


# Server-side failures


def failing_view(exception):
    def view():
        raise exception

    return view


def test_unexpected_exception_is_a_500_problem_without_details(app, client, caplog):
    app.add_url_rule("/boom", "boom", failing_view(RuntimeError("secret detail")))

    with caplog.at_level(logging.ERROR):
        response = client.get("/boom", headers={"X-Request-ID": "boom-request-1"})

    body = assert_problem(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    for leak in ("secret detail", "RuntimeError", "Traceback", "failing_view", ".py"):
        assert leak not in text
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert response.headers["X-Request-ID"] == "boom-request-1"

    records = [record for record in caplog.records if record.exc_info]
    assert len(records) == 1
    assert "boom-request-1" in records[0].getMessage()
    assert records[0].exc_info[0] is RuntimeError
    assert "Traceback" in caplog.text and "secret detail" in caplog.text


@pytest.mark.parametrize(
    "exception",
    [sqlite3.OperationalError("database is locked"), sqlite3.OperationalError("unable to open database file")],
)
def test_database_operational_error_is_a_503_problem_with_retry_after(app, client, caplog, exception):
    app.add_url_rule("/locked", "locked", failing_view(exception))

    with caplog.at_level(logging.ERROR):
        response = client.get("/locked", headers={"X-Request-ID": "locked-1"})

    assert_problem(response, 503, "database_unavailable")
    assert re.fullmatch(r"[0-9]+", response.headers["Retry-After"])
    assert str(exception) not in response.get_data(as_text=True)
    assert any("locked-1" in record.getMessage() for record in caplog.records)


def test_health_is_ok_after_a_database_round_trip(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok"}


def test_health_is_503_when_the_database_directory_is_missing(app, client, tmp_path):
    app.config["DATABASE"] = str(tmp_path / "missing" / "db.sqlite")

    response = client.get("/health")

    assert_problem(response, 503, "database_unavailable")
    assert "Retry-After" in response.headers
    assert not (tmp_path / "missing").exists()


def test_health_is_503_when_the_database_file_was_removed(app, client):
    assert client.get("/health").status_code == 200
    os.remove(app.config["DATABASE"])

    response = client.get("/health")

    assert_problem(response, 503, "database_unavailable")
    assert not os.path.exists(app.config["DATABASE"])


def test_pets_route_is_503_when_the_database_is_gone(app, client, tmp_path):
    headers = pets_headers(client)
    app.config["DATABASE"] = str(tmp_path / "missing" / "db.sqlite")

    assert_problem(client.get("/pets", headers=headers), 503, "database_unavailable")


# Headers on every response


def some_responses(app, client):
    """One response of each kind a client meets, all sent with ``headers``."""
    app.add_url_rule("/boom", "boom", failing_view(RuntimeError("boom")))

    def send(headers):
        return {
            "200 health": client.get("/health", headers=headers),
            "201 register": client.post("/users", json={"username": "headers", "password": PASSWORD}, headers=headers),
            "401 no token": client.get("/pets", headers=headers),
            "404 unknown": client.get("/nowhere", headers=headers),
            "405 method": client.delete("/health", headers=headers),
            "413 too large": client.post(
                "/users", data="x" * (MAX_BODY + 1), content_type="application/json", headers=headers
            ),
            "415 text": client.post("/users", data="x", content_type="text/plain", headers=headers),
            "500 crash": client.get("/boom", headers=headers),
            "preflight": client.options(
                "/pets",
                headers={**headers, "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
            ),
        }

    return send


def test_every_response_carries_nosniff_and_a_request_id(app, client):
    responses = some_responses(app, client)({})

    for kind, response in responses.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", kind
        assert GENERATED_REQUEST_ID.fullmatch(response.headers.get("X-Request-ID", "")), kind
    ids = [response.headers["X-Request-ID"] for response in responses.values()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("request_id", ["abc-123", "a", "A.b_c-9", "r" * 128])
def test_a_valid_client_request_id_is_echoed_on_every_response(app, client, request_id):
    responses = some_responses(app, client)({"X-Request-ID": request_id})

    for kind, response in responses.items():
        assert response.headers.get("X-Request-ID") == request_id, kind


@pytest.mark.parametrize(
    "request_id",
    ["r" * 129, "r" * 200, "has spaces in it", "semi;colon", "new\\line", "ünïcode", "a/b", "<script>"],
)
def test_an_invalid_client_request_id_is_replaced(client, request_id):
    response = client.get("/health", headers={"X-Request-ID": request_id})

    replaced = response.headers["X-Request-ID"]
    assert replaced != request_id
    assert GENERATED_REQUEST_ID.fullmatch(replaced)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
