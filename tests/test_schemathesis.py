"""Schemathesis against the real gunicorn: every operation of openapi.json, with a real token.

Each generated request, valid or not, must get no 5xx, a status its
operation documents, the documented content type, a body that matches the
documented schema, and the headers documented as required (WWW-Authenticate,
Cache-Control, Location, Retry-After). Examples per operation are bounded so
that the whole run stays well under a minute.

gunicorn's own limits (a request line over 4094 bytes, header fields over
its limits) apply to every route before the app runs; generated cases that
cross them must get the problem document the README promises for them.
"""
import json
import sqlite3
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import launch

pytestmark = pytest.mark.e2e

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "jwt_server" / "openapi.json"
# The answers gunicorn gives on any route for requests over its limits.
SERVER_LIMITS = {414: "uri_too_long", 431: "request_header_fields_too_large"}


def status_code_conformance_or_server_limit(ctx, response, case):
    """status_code_conformance, except for gunicorn's problem documents on its limits."""
    content_type = response.headers.get("content-type", [""])[0]
    if response.status_code in SERVER_LIMITS and content_type == "application/problem+json":
        body = json.loads(response.content)
        assert body["status"] == response.status_code and body["code"] == SERVER_LIMITS[response.status_code]
        return None
    return status_code_conformance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance_or_server_limit,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 100
USERNAME, PASSWORD = "schemathesis-user", "a password nobody will generate"
# Operations after which the caller's session may be over: the next case logs in again.
SESSION_ENDING = {
    ("POST", "/auth/logout"),
    ("DELETE", "/users/me/sessions"),
    ("DELETE", "/users/me/sessions/{session_id}"),
    ("PUT", "/users/me/password"),
    ("DELETE", "/users/me"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = launch(tmp_path_factory.mktemp("schemathesis"), workers=2)
    yield server
    server.stop()


class Credentials:
    """A registered administrator (so GET /users answers 200) and a token, renewed when a case ends it."""

    def __init__(self, server):
        self.server, self.token = server, None
        server.register(USERNAME, PASSWORD)
        connection = sqlite3.connect(server.database)
        with connection:
            connection.execute("UPDATE users SET is_admin = 1 WHERE username = ?", (USERNAME,))
        connection.close()

    def headers(self):
        if self.token is None:
            self.token = self.server.log_in(USERNAME, PASSWORD).access
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def credentials(server):
    return Credentials(server)


# Loaded at import, from the file: one test per operation. (A lazy schema from a
# fixture, schemathesis.pytest.from_fixture, breaks on pytest 9.2's node ids.)
schema = schemathesis.openapi.from_path(DOCUMENT_PATH)
schema.config.update(request_timeout=30)
# The real token is the only credential sent: no random Authorization headers.
schema.config.generation.update(with_security_parameters=False)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_conforms_to_openapi_json(case, server, credentials):
    try:
        case.call_and_validate(base_url=server.base_url, headers=credentials.headers(), checks=CHECKS)
    finally:
        if (case.method.upper(), case.path) in SESSION_ENDING:
            credentials.token = None


def test_a_generated_request_line_over_gunicorns_limit_passes_the_checks(server, credentials):
    case = schema["/pets"]["GET"].Case(query={"species": "a" * 5000})
    response = case.call_and_validate(base_url=server.base_url, headers=credentials.headers(), checks=CHECKS)
    assert response.status_code == 414
