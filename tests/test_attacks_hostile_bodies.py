"""Hostile request bodies a security reviewer would send, route by route and
field by field: broken JSON, other media types, wrong types, hostile strings
and forms; and hostile text (SQL) the server must store as the literal text it is.

Every attack asserts the exact status and code and that the database is
unchanged, table by table, row by row (a failed login may count in the throttle).
"""
import json

import pytest

from tests.helpers import PASSWORD, assert_problem, assert_unchanged, log_in, snapshot

# About HTTP and tokens, not the database: SQLite alone is enough.
pytestmark = pytest.mark.sqlite_only

SQL_FRAGMENTS = [
    "' OR 1=1 --",
    "victim' --",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1 UNION SELECT password_hash FROM users",
]
BIG = 60_000  # under the 64 KiB body limit once quoted


def nested(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


WRONG_TYPES = [123, 1.5, True, None, [], {}, ["a"], {"$ne": ""}, json.loads(nested(200))]
# Each route that takes a body: method, path (pet ids filled in), whether it needs the attacker's token.
BODY_ROUTES = {
    "register": ("POST", "/users", False),
    "log-in": ("POST", "/auth", False),
    "refresh": ("POST", "/auth/refresh", False),
    "create-pet": ("POST", "/pets", True),
    "patch-pet": ("PATCH", "/pets/{own_pet}", True),
    "put-pet": ("PUT", "/pets/{own_pet}", True),
    "change-password": ("PUT", "/users/me/password", True),
    "delete-account": ("DELETE", "/users/me", True),
}
# Well-formed bodies; each test replaces one field with something hostile.
WELL_FORMED = {
    "register": {"username": "newuser", "password": PASSWORD},
    "log-in": {"username": "mallory", "password": "wrong password"},
    "refresh": {"refresh_token": "not-a-refresh-token"},
    "create-pet": {"name": "Rex", "species": "dog"},
    "patch-pet": {"name": "Rex", "species": "dog"},
    "put-pet": {"name": "Rex", "species": "dog"},
    "change-password": {"current_password": PASSWORD, "new_password": "a new password"},
    "delete-account": {"password": PASSWORD},
}
# What a wrong value in one field gets, per route: 422 naming the field, except a refresh token (401).
WRONG_VALUE = {
    "register": (422, "validation_error"),
    "log-in": (422, "validation_error"),
    "refresh": (401, "invalid_refresh_token"),
    "create-pet": (422, "validation_error"),
    "patch-pet": (422, "validation_error"),
    "put-pet": (422, "validation_error"),
    "change-password": (422, "validation_error"),
    "delete-account": (422, "validation_error"),
}
# A failed login, or a wrong password at the password routes, is counted by
# the throttle: that table may change, no other.
BOOKKEEPING = {route: {"login_throttle"} for route in ("log-in", "change-password", "delete-account")}


class Target:
    def __init__(self, scene, route):
        self.scene, self.route = scene, route
        method, path, needs_token = BODY_ROUTES[route]
        self.own_pet = scene.call("POST", "/pets", scene.attacker_token, json={"name": "Own"}).get_json()["id"]
        self.method, self.path = method, path.format(own_pet=self.own_pet)
        self.token = scene.attacker_token if needs_token else None

    def send(self, **kwargs):
        return self.scene.call(self.method, self.path, self.token, **kwargs)


@pytest.fixture(params=BODY_ROUTES, ids=BODY_ROUTES.keys())
def target(request, scene):
    return Target(scene, request.param)


RAW_BODIES = [
    pytest.param(b'{"username": "a", ', 400, "malformed_json", id="truncated"),
    pytest.param(b"{'name': 'Bunny'}", 400, "malformed_json", id="single-quotes"),
    pytest.param(b'{"name": NaN}', 422, None, id="nan"),
    pytest.param(b'{"name": "Bun\x00ny"}', 400, "malformed_json", id="raw-nul-byte"),
    pytest.param(b'{"name": "Bunny\xff\xfe"}', 400, "malformed_json", id="non-utf-8"),
    pytest.param(nested(20_000).encode(), 400, "malformed_json", id="20000-nested-arrays"),
    pytest.param(('{"a":' * 10_000 + "1" + "}" * 10_000).encode(), 400, "malformed_json", id="10000-nested-objects"),
    pytest.param(b"[" * 60_000, 400, "malformed_json", id="60000-open-brackets"),
    pytest.param(b'{"name": "' + b"x" * (64 * 1024) + b'"}', 413, "payload_too_large", id="over-64-KiB"),
]


@pytest.mark.parametrize("data, status, code", RAW_BODIES)
def test_hostile_raw_body_is_refused_and_changes_nothing(target, database, data, status, code):
    before = snapshot(database)

    response = target.send(data=data, content_type="application/json")

    if code is None:  # Python's json reads NaN: then the body is merely invalid for the route
        status, code = WRONG_VALUE[target.route]
    assert_problem(response, status, code)
    assert_unchanged(database, before, BOOKKEEPING.get(target.route, ()))


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("text/plain", b'{"name": "Bunny"}'),
        ("application/xml", b"<pet/>"),
        ("application/json-patch+json", b"[]"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
def test_other_body_types_are_415_and_change_nothing(target, database, content_type, data):
    before = snapshot(database)

    response = target.send(data=data, content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert_unchanged(database, before)


@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda value: type(value).__name__ + ":" + json.dumps(value)[:12])
def test_wrong_type_in_every_field_is_refused_and_changes_nothing(target, database, value):
    for field in WELL_FORMED[target.route]:
        if field == "species" and value is None:
            continue  # null is a valid species
        before = snapshot(database)

        response = target.send(json={**WELL_FORMED[target.route], field: value})

        status, code = WRONG_VALUE[target.route]
        body = assert_problem(response, status, code)
        if status == 422:
            assert field in [error["field"] for error in body["errors"]], body
        assert_unchanged(database, before, BOOKKEEPING.get(target.route, ()))


@pytest.mark.parametrize("data", ["[1, 2]", '"a string"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_refused_and_changes_nothing(target, database, data):
    before = snapshot(database)

    response = target.send(data=data, content_type="application/json")

    # 400 invalid_body: a body must be a JSON object, on every route that takes one.
    assert_problem(response, 400, "invalid_body")
    assert_unchanged(database, before)


# Hostile strings, field by field: (route, field, value, status, code)
HOSTILE_STRINGS = [
    *[("register", "username", fragment, 422, "validation_error") for fragment in SQL_FRAGMENTS],
    ("register", "username", "x" * BIG, 422, "validation_error"),
    ("register", "username", "vic\u0000tim", 422, "validation_error"),
    ("register", "username", "VICTIM", 409, "username_taken"),
    ("register", "username", "victim\u0000", 422, "validation_error"),
    ("register", "username", "v\u0131ctim", 422, "validation_error"),
    ("register", "password", "p" * BIG, 422, "validation_error"),
    ("register", "password", "pass\u0000word-long", 422, "validation_error"),
    ("register", "password", "lone \ud800 surrogate", 422, "validation_error"),
    *[("log-in", "username", fragment, 401, "invalid_credentials") for fragment in SQL_FRAGMENTS],
    *[("log-in", "password", fragment, 401, "invalid_credentials") for fragment in SQL_FRAGMENTS],
    ("log-in", "username", "x" * BIG, 401, "invalid_credentials"),
    ("log-in", "password", "x" * BIG, 401, "invalid_credentials"),
    ("log-in", "username", "mallory\u0000", 401, "invalid_credentials"),
    ("log-in", "password", PASSWORD + "\u0000", 401, "invalid_credentials"),
    ("log-in", "password", "\u0000" + PASSWORD, 401, "invalid_credentials"),
    ("log-in", "username", "mallory\ud800", 401, "invalid_credentials"),
    ("log-in", "password", "\udfff", 401, "invalid_credentials"),
    ("log-in", "password", PASSWORD + "x" * 100, 401, "invalid_credentials"),
    *[("refresh", "refresh_token", fragment, 401, "invalid_refresh_token") for fragment in SQL_FRAGMENTS],
    ("refresh", "refresh_token", "x" * BIG, 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "abc\u0000def", 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "\ud800", 401, "invalid_refresh_token"),
    ("refresh", "refresh_token", "", 401, "invalid_refresh_token"),
    ("create-pet", "name", "x" * BIG, 422, "validation_error"),
    ("create-pet", "name", "Bun\u0000ny", 422, "validation_error"),
    ("create-pet", "name", "\ud800", 422, "validation_error"),
    ("create-pet", "name", " " * 50, 422, "validation_error"),
    ("create-pet", "species", "x" * BIG, 422, "validation_error"),
    ("create-pet", "species", "d\u0000g", 422, "validation_error"),
    ("patch-pet", "name", "x" * BIG, 422, "validation_error"),
    ("patch-pet", "name", "Bun\u0000ny", 422, "validation_error"),
    ("patch-pet", "species", "\udc00", 422, "validation_error"),
    ("put-pet", "name", "x" * BIG, 422, "validation_error"),
    ("put-pet", "species", "d\u0000g", 422, "validation_error"),
    *[("change-password", "current_password", fragment, 403, "wrong_password") for fragment in SQL_FRAGMENTS],
    ("change-password", "current_password", "x" * BIG, 403, "wrong_password"),
    ("change-password", "current_password", PASSWORD + "\u0000", 403, "wrong_password"),
    ("change-password", "new_password", "x" * BIG, 422, "validation_error"),
    ("change-password", "new_password", "new\u0000password", 422, "validation_error"),
    ("change-password", "new_password", "\ud800" * 10, 422, "validation_error"),
    *[("delete-account", "password", fragment, 403, "wrong_password") for fragment in SQL_FRAGMENTS],
    ("delete-account", "password", "x" * BIG, 403, "wrong_password"),
    ("delete-account", "password", PASSWORD + "\u0000", 403, "wrong_password"),
    ("delete-account", "password", "\ud800", 403, "wrong_password"),
]


@pytest.mark.parametrize(
    "route, field, value, status, code",
    HOSTILE_STRINGS,
    ids=[f"{route}-{field}-{json.dumps(value)[:24]}" for route, field, value, *_ in HOSTILE_STRINGS],
)
def test_hostile_string_is_refused_and_changes_nothing(scene, database, route, field, value, status, code):
    target = Target(scene, route)
    before = snapshot(database)

    response = target.send(json={**WELL_FORMED[route], field: value})

    body = assert_problem(response, status, code)
    if status == 422:
        assert [error["field"] for error in body["errors"]] == [field], body
    assert_unchanged(database, before, BOOKKEEPING.get(route, ()))


@pytest.mark.parametrize(
    "form",
    [
        b"username=%ff%fe&password=%ff",
        b"username=mallory%00&password=x",
        b"username=mallory&password=" + b"%00" * 10,
        b"username=%27%20OR%201%3D1%20--&password=%27%20OR%201%3D1%20--",
        b"username=mallory&password=%c3%28",
        b"username=" + b"x" * BIG + b"&password=x",
        b"username[]=mallory&password[$ne]=x&username=mallory&password=x",
    ],
)
@pytest.mark.parametrize("path", ["/auth", "/auth/refresh"])
def test_hostile_form_on_the_routes_that_take_forms_is_refused(scene, database, path, form):
    before = snapshot(database)

    response = scene.client.post(path, data=form, content_type="application/x-www-form-urlencoded")

    if path == "/auth":
        assert_problem(response, 401, "invalid_credentials")
    else:
        assert_problem(response, 401, "invalid_refresh_token")
    assert_unchanged(database, before, {"login_throttle"})


# Hostile values the server must accept as the literal text they are


def stored(database, sql, *parameters):
    return [tuple(row) for row in database.execute(sql, parameters)]


@pytest.mark.parametrize("fragment", SQL_FRAGMENTS)
def test_sql_in_a_password_is_stored_as_a_hash_and_logs_in_literally(scene, database, fragment):
    password = fragment.ljust(8, "!")
    before = snapshot(database)

    response = scene.client.post("/users", json={"username": "bobby.tables", "password": password})

    assert response.status_code == 201
    after = snapshot(database)
    assert {table for table in after if after[table] != before[table]} <= {"users", "sqlite_sequence"}
    assert len(after["users"]) == len(before["users"]) + 1
    assert log_in(scene.client, "bobby.tables", password).access
    assert scene.client.post("/auth", json={"username": "bobby.tables", "password": "' OR 1=1 --x"}).status_code == 401


@pytest.mark.parametrize("fragment", SQL_FRAGMENTS)
def test_sql_in_a_pet_name_and_species_is_stored_literally(scene, database, fragment):
    users_before = stored(database, "SELECT * FROM users ORDER BY id")
    others_before = stored(database, "SELECT * FROM pets WHERE user_id != ? ORDER BY id", scene.attacker_id)

    created = scene.call("POST", "/pets", scene.attacker_token, json={"name": fragment, "species": fragment[:50]})
    pet_id = created.get_json()["id"]
    patched = scene.call("PATCH", f"/pets/{pet_id}", scene.attacker_token, json={"name": fragment + "'"})

    assert created.status_code == 201 and patched.status_code == 200
    assert stored(database, "SELECT name, species FROM pets WHERE id = ?", pet_id) == [
        (fragment + "'", fragment[:50])
    ]
    assert stored(database, "SELECT * FROM users ORDER BY id") == users_before
    assert stored(database, "SELECT * FROM pets WHERE user_id != ? ORDER BY id", scene.attacker_id) == others_before
    species_filter = scene.call("GET", "/pets", scene.attacker_token, query_string={"species": "' OR 1=1 --"})
    assert species_filter.status_code == 200
    expected = [fragment] if fragment == "' OR 1=1 --" else []
    assert [pet["species"] for pet in species_filter.get_json()] == expected
