"""Hostile paths and query strings: ids that are no ids, other users' sessions,
injected query parameters. Each gets 404 or 422 and changes nothing.
"""
import pytest

from tests.helpers import INT64_MAX, assert_problem, assert_unchanged, snapshot

HOSTILE_IDS = [
    "0",
    "-1",
    "00",
    "1e3",
    "0x10",
    "1.0",
    "%201",
    "１",
    str(INT64_MAX),
    str(INT64_MAX + 1),
    "9" * 40,
    "9" * 4000,
    "1%20OR%201=1",
    "1;DROP%20TABLE%20pets",
]


@pytest.mark.parametrize("pet_id", HOSTILE_IDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_hostile_pet_id_is_404_and_changes_nothing(scene, database, method, pet_id):
    before = snapshot(database)

    response = scene.call(method, f"/pets/{pet_id}", scene.attacker_token, json={"name": "Rex"})

    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["code"] in {"not_found", "pet_not_found"}
    assert_unchanged(database, before)


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_hostile_session_id_is_404_and_changes_nothing(scene, database, session_id):
    before = snapshot(database)

    response = scene.call("DELETE", f"/users/me/sessions/{session_id}", scene.attacker_token)

    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["code"] in {"not_found", "session_not_found"}
    assert_unchanged(database, before)


def test_another_users_session_id_is_404_and_stays_live(scene, database):
    before = snapshot(database)

    response = scene.call("DELETE", f"/users/me/sessions/{scene.victim_claims['sid']}", scene.attacker_token)

    assert_problem(response, 404, "session_not_found")
    assert_unchanged(database, before)
    assert scene.call("GET", "/users/me", scene.victim_token).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "1 OR 1=1"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1001"},
        {"limit": "9" * 40},
        {"limit": "1e3"},
        {"after": "-1"},
        {"after": str(INT64_MAX + 1)},
        {"after": "0 UNION SELECT 1"},
        {"species": "d\u0000g"},
        {"species": "x" * 5000},
        {"species": "   "},
    ],
)
def test_hostile_query_on_pets_is_422_and_changes_nothing(scene, database, query):
    before = snapshot(database)

    response = scene.call("GET", "/pets", scene.attacker_token, query_string=query)

    body = assert_problem(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == list(query)
    assert_unchanged(database, before)
