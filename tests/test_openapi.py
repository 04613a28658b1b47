"""jwt_server/openapi.json: valid OpenAPI 3.1, served at GET /openapi.json, and the app's routes exactly."""
import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "jwt_server" / "openapi.json"
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
BODY_ERRORS = {"400", "413", "415"}


def shape(path):
    """``/pets/<int:pet_id>`` and ``/pets/{id}`` both become ``/pets/{}``."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "{}", path)


def app_operations(app):
    return {
        (method, shape(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - IMPLICIT_METHODS
    }


def operations():
    """Every (path, method, operation) of the document."""
    return [
        (path, method, item[method])
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]


def document_operations():
    return {(method.upper(), shape(path)) for path, method, _ in operations()}


def resolve(node):
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = DOCUMENT["components"][kind][name]
    return node


def test_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")

    validate(DOCUMENT)


def test_app_routes_and_document_operations_are_the_same_set(app):
    in_app, in_document = app_operations(app), document_operations()

    assert in_app - in_document == set(), "routes missing from openapi.json"
    assert in_document - in_app == set(), "operations in openapi.json that the app does not have"


def test_document_path_parameters_match_the_path_templates():
    for path, item in DOCUMENT["paths"].items():
        parameters = map(resolve, item.get("parameters", []))
        declared = {parameter["name"] for parameter in parameters if parameter["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


def test_every_id_in_a_path_is_a_positive_int64():
    for path, item in DOCUMENT["paths"].items():
        for parameter in map(resolve, item.get("parameters", [])):
            schema = resolve(parameter["schema"])
            assert schema["type"] == "integer" and schema["format"] == "int64", path
            assert schema["minimum"] == 1 and schema["maximum"] == 2**63 - 1, path


def test_every_secured_operation_documents_401_and_only_those_do():
    for path, method, operation in operations():
        secured = operation.get("security") == [{"bearerAuth": []}]
        assert ("401" in operation["responses"]) == (secured or path in {"/auth", "/auth/refresh"}), (method, path)


def test_every_operation_with_a_body_documents_400_413_and_415():
    for path, method, operation in operations():
        documented = set(operation["responses"])
        if "requestBody" in operation:
            assert documented >= BODY_ERRORS, (method, path)
        else:
            assert not BODY_ERRORS & documented, (method, path)


def test_every_error_response_is_a_problem_document():
    for path, method, operation in operations():
        for status, response in operation["responses"].items():
            content = resolve(response).get("content", {})
            if int(status) >= 400:
                assert list(content) == ["application/problem+json"], (method, path, status)
            elif int(status) == 204:
                assert content == {}, (method, path, status)
            else:
                assert list(content) == ["application/json"], (method, path, status)


def test_openapi_json_is_served_as_the_file_says(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == DOCUMENT


@pytest.mark.parametrize(
    "path, method, operation", operations(), ids=[f"{method.upper()} {path}" for path, method, _ in operations()]
)
def test_an_operation_is_secured_exactly_when_the_app_wants_a_token(client, path, method, operation):
    """Without a token, a secured operation is a 401 and an open one is not."""
    concrete = re.sub(r"\{[^}]*\}", "1", path)

    response = client.open(concrete, method=method.upper(), json={})

    if operation.get("security") == [{"bearerAuth": []}]:
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.get_json()["code"] == "authentication_required"
    else:
        assert response.status_code in {int(status) for status in operation["responses"]}
        assert response.status_code < 400 or response.get_json()["code"] != "authentication_required"
