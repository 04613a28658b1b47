"""The pets API: each caller sees and changes only their own pets."""
import re

import pytest

from tests.helpers import log_in, register

LINK_NEXT = re.compile(r'<(/pets\?[^>]*)>; rel="next"')


@pytest.fixture
def other_headers(client, auth_headers):
    """A second user, alice, logged in (travis of auth_headers exists first)."""
    register(client, "alice")
    return log_in(client, "alice").headers


def create_pet(client, headers, **body):
    response = client.post("/pets", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pet_rows(database):
    """Every pet in the database, as (id, user_id, name, species), by id."""
    return [tuple(row) for row in database.execute("SELECT id, user_id, name, species FROM pets ORDER BY id")]


def user_id(database, username):
    return database.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()["id"]


def insert_pets(database, owner_id, count, species=None):
    database.executemany(
        "INSERT INTO pets (user_id, name, species) VALUES (?, ?, ?)",
        [(owner_id, f"pet {n}", species) for n in range(count)],
    )
    database.commit()


def assert_validation_error(response, field):
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert field in [error["field"] for error in body["errors"]]


def next_link(response):
    """The path of the Link rel="next" header, or None when there is none."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = LINK_NEXT.fullmatch(link)
    assert match, link
    return match.group(1)


# Listing


@pytest.mark.parametrize("path", ["/my-pets", "/pets"])
def test_lists_hold_only_the_callers_pets_by_id(client, auth_headers, other_headers, path):
    first = create_pet(client, auth_headers, name="Bunny", species="dog")
    create_pet(client, other_headers, name="Not yours", species="cat")
    second = create_pet(client, auth_headers, name="Rex")

    response = client.get(path, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == [first, second]


@pytest.mark.parametrize("path", ["/my-pets", "/pets"])
def test_lists_are_empty_for_a_user_without_pets(client, auth_headers, other_headers, path):
    create_pet(client, auth_headers, name="Bunny")

    response = client.get(path, headers=other_headers)

    assert response.status_code == 200
    assert response.get_json() == []


# Creating


def test_create_pet_answers_201_with_the_pet_and_its_location(client, auth_headers, database):
    response = client.post("/pets", json={"name": "Bunny", "species": "dog"}, headers=auth_headers)

    assert response.status_code == 201
    pet = response.get_json()
    assert pet == {"id": pet["id"], "name": "Bunny", "species": "dog"}
    assert isinstance(pet["id"], int)
    assert response.headers["Location"] == f"/pets/{pet['id']}"
    assert pet_rows(database) == [(pet["id"], user_id(database, "travis"), "Bunny", "dog")]
    assert client.get(response.headers["Location"], headers=auth_headers).get_json() == pet


def test_create_pet_trims_the_name_and_species(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="  Bunny \t", species=" dog ")

    assert pet["name"] == "Bunny"
    assert pet["species"] == "dog"
    assert pet_rows(database)[0][2:] == ("Bunny", "dog")


@pytest.mark.parametrize("body", [{"name": "Bunny"}, {"name": "Bunny", "species": None}])
def test_create_pet_without_species_stores_null(client, auth_headers, database, body):
    response = client.post("/pets", json=body, headers=auth_headers)

    assert response.status_code == 201
    assert response.get_json()["species"] is None
    assert pet_rows(database)[0][3] is None


def test_create_pet_accepts_the_longest_name_and_species(client, auth_headers):
    pet = create_pet(client, auth_headers, name="n" * 100, species="s" * 50)

    assert pet["name"] == "n" * 100
    assert pet["species"] == "s" * 50


INVALID_PET_BODIES = [
    pytest.param({}, "name", id="missing name"),
    pytest.param({"species": "dog"}, "name", id="species without name"),
    pytest.param({"name": ""}, "name", id="empty name"),
    pytest.param({"name": " \t\n "}, "name", id="whitespace name"),
    pytest.param({"name": "n" * 101}, "name", id="101-char name"),
    pytest.param({"name": None}, "name", id="null name"),
    pytest.param({"name": 42}, "name", id="number name"),
    pytest.param({"name": True}, "name", id="boolean name"),
    pytest.param({"name": ["Bunny"]}, "name", id="list name"),
    pytest.param({"name": {"first": "Bunny"}}, "name", id="object name"),
    pytest.param({"name": "Bun\u0000ny"}, "name", id="NUL in name"),
    pytest.param({"name": "Bunny", "species": "s" * 51}, "species", id="51-char species"),
    pytest.param({"name": "Bunny", "species": ""}, "species", id="empty species"),
    pytest.param({"name": "Bunny", "species": 7}, "species", id="number species"),
    pytest.param({"name": "Bunny", "species": False}, "species", id="boolean species"),
    pytest.param({"name": "Bunny", "species": ["dog"]}, "species", id="list species"),
    pytest.param({"name": "Bunny", "species": "d\u0000g"}, "species", id="NUL in species"),
]


@pytest.mark.parametrize("body, field", INVALID_PET_BODIES)
def test_create_pet_rejects_invalid_fields(client, auth_headers, database, body, field):
    create_pet(client, auth_headers, name="Existing")
    before = pet_rows(database)

    response = client.post("/pets", json=body, headers=auth_headers)

    assert_validation_error(response, field)
    assert pet_rows(database) == before


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"name": "\\ud800"}', id="lone surrogate alone"),
        pytest.param('{"name": "Bun\\ud800ny"}', id="lone surrogate inside"),
        pytest.param('{"name": "Bunny", "species": "\\udfff"}', id="lone surrogate species"),
    ],
)
def test_create_pet_rejects_lone_surrogates(client, auth_headers, database, raw):
    field = "species" if "species" in raw else "name"

    response = client.post("/pets", data=raw, content_type="application/json", headers=auth_headers)

    assert_validation_error(response, field)
    assert pet_rows(database) == []


def test_create_pet_reports_every_invalid_field(client, auth_headers):
    response = client.post("/pets", json={"name": "", "species": 3}, headers=auth_headers)

    assert response.status_code == 422
    assert {error["field"] for error in response.get_json()["errors"]} == {"name", "species"}


# Reading one


def test_get_pet_returns_the_pet(client, auth_headers):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")

    response = client.get(f"/pets/{pet['id']}", headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == pet


def assert_pet_not_found(response):
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "pet_not_found"


def test_other_users_pet_is_not_found(client, auth_headers, other_headers):
    pet = create_pet(client, other_headers, name="Alice's cat", species="cat")

    response = client.get(f"/pets/{pet['id']}", headers=auth_headers)

    assert_pet_not_found(response)
    assert "Alice" not in response.get_data(as_text=True)


@pytest.mark.parametrize("pet_id", ["12345", "0", str(2**63 - 1), str(2**63), "99999999999999999999"])
def test_missing_pet_is_not_found(client, auth_headers, pet_id):
    response = client.get(f"/pets/{pet_id}", headers=auth_headers)

    assert_pet_not_found(response)


# Changing


def test_patch_changes_only_the_species(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")

    response = client.patch(f"/pets/{pet['id']}", json={"species": None}, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == {"id": pet["id"], "name": "Bunny", "species": None}
    assert pet_rows(database)[0][2:] == ("Bunny", None)


def test_patch_changes_only_the_name(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")

    response = client.patch(f"/pets/{pet['id']}", json={"name": "  Rex "}, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == {"id": pet["id"], "name": "Rex", "species": "dog"}
    assert pet_rows(database)[0][2:] == ("Rex", "dog")


def test_patch_with_no_fields_leaves_the_pet_unchanged(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")
    before = pet_rows(database)

    response = client.patch(f"/pets/{pet['id']}", json={}, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == pet
    assert pet_rows(database) == before


@pytest.mark.parametrize(
    "body, field", [({"name": ""}, "name"), ({"name": None}, "name"), ({"species": "s" * 51}, "species")]
)
def test_patch_rejects_invalid_fields_and_changes_nothing(client, auth_headers, database, body, field):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")
    before = pet_rows(database)

    response = client.patch(f"/pets/{pet['id']}", json=body, headers=auth_headers)

    assert_validation_error(response, field)
    assert pet_rows(database) == before


def test_put_replaces_name_and_species(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")

    response = client.put(f"/pets/{pet['id']}", json={"name": " Rex ", "species": "cat"}, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == {"id": pet["id"], "name": "Rex", "species": "cat"}
    assert pet_rows(database)[0][2:] == ("Rex", "cat")


def test_put_without_species_sets_it_to_null(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")

    response = client.put(f"/pets/{pet['id']}", json={"name": "Bunny"}, headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == {"id": pet["id"], "name": "Bunny", "species": None}
    assert pet_rows(database)[0][3] is None


@pytest.mark.parametrize("body", [{"species": "cat"}, {}])
def test_put_without_name_is_rejected_and_changes_nothing(client, auth_headers, database, body):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")
    before = pet_rows(database)

    response = client.put(f"/pets/{pet['id']}", json=body, headers=auth_headers)

    assert_validation_error(response, "name")
    assert pet_rows(database) == before


@pytest.mark.parametrize(
    "method, body",
    [("patch", {"name": "Stolen"}), ("put", {"name": "Stolen", "species": "rat"}), ("delete", None)],
)
def test_other_users_pet_cannot_be_changed(client, auth_headers, other_headers, database, method, body):
    pet = create_pet(client, other_headers, name="Alice's cat", species="cat")
    before = pet_rows(database)

    response = getattr(client, method)(f"/pets/{pet['id']}", json=body, headers=auth_headers)

    assert_pet_not_found(response)
    assert pet_rows(database) == before
    assert client.get(f"/pets/{pet['id']}", headers=other_headers).get_json() == pet


@pytest.mark.parametrize(
    "method, body",
    [("patch", {"name": "Ghost"}), ("put", {"name": "Ghost"}), ("delete", None)],
)
@pytest.mark.parametrize("pet_id", ["12345", "99999999999999999999"])
def test_changing_a_missing_pet_is_not_found(client, auth_headers, database, method, body, pet_id):
    response = getattr(client, method)(f"/pets/{pet_id}", json=body, headers=auth_headers)

    assert_pet_not_found(response)
    assert pet_rows(database) == []


def test_deleted_pet_is_gone(client, auth_headers, database):
    pet = create_pet(client, auth_headers, name="Bunny")
    kept = create_pet(client, auth_headers, name="Rex")

    response = client.delete(f"/pets/{pet['id']}", headers=auth_headers)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert_pet_not_found(client.get(f"/pets/{pet['id']}", headers=auth_headers))
    assert_pet_not_found(client.delete(f"/pets/{pet['id']}", headers=auth_headers))
    assert [row[0] for row in pet_rows(database)] == [kept["id"]]


# Paging and filtering


def test_pets_list_pages_at_100_by_default(client, auth_headers, database):
    insert_pets(database, user_id(database, "travis"), 101)

    response = client.get("/pets", headers=auth_headers)

    assert response.status_code == 200
    assert len(response.get_json()) == 100
    assert next_link(response) is not None


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_pets_list_accepts_limits_from_1_to_1000(client, auth_headers, database, limit):
    insert_pets(database, user_id(database, "travis"), 1001)

    response = client.get(f"/pets?limit={limit}", headers=auth_headers)

    assert response.status_code == 200
    assert len(response.get_json()) == int(limit)


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1.5", "", " 3", "1e2", str(2**64)])
def test_pets_list_rejects_a_bad_limit(client, auth_headers, limit):
    response = client.get("/pets", query_string={"limit": limit}, headers=auth_headers)

    assert_validation_error(response, "limit")


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", "", str(2**63), "99999999999999999999"])
def test_pets_list_rejects_a_bad_after(client, auth_headers, after):
    response = client.get("/pets", query_string={"after": after}, headers=auth_headers)

    assert_validation_error(response, "after")


def test_pets_list_after_the_largest_id_is_empty(client, auth_headers):
    create_pet(client, auth_headers, name="Bunny")

    response = client.get(f"/pets?after={2**63 - 1}", headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert "Link" not in response.headers


def test_pets_list_after_returns_only_later_pets(client, auth_headers):
    pets = [create_pet(client, auth_headers, name=f"pet {n}") for n in range(4)]

    response = client.get(f"/pets?after={pets[1]['id']}", headers=auth_headers)

    assert response.get_json() == pets[2:]


def follow_pages(client, headers, path):
    """Every page from ``path`` on, following Link rel="next": [(pets, link), ...]."""
    pages = []
    while path is not None:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.get_json()
        path = next_link(response)
        pages.append((response.get_json(), path))
        assert len(pages) <= 10, "the Link header never stops"
    return pages


def test_following_next_links_walks_the_whole_list_without_overlap_or_gaps(client, auth_headers, other_headers):
    pets = [create_pet(client, auth_headers, name=f"pet {n}") for n in range(7)]
    create_pet(client, other_headers, name="Not yours")

    pages = follow_pages(client, auth_headers, "/pets?limit=3")

    assert [len(page) for page, _ in pages] == [3, 3, 1]
    assert [pet for page, _ in pages for pet in page] == pets
    assert [link is not None for _, link in pages] == [True, True, False]


def test_no_next_link_when_the_last_page_is_exactly_full(client, auth_headers):
    pets = [create_pet(client, auth_headers, name=f"pet {n}") for n in range(6)]

    pages = follow_pages(client, auth_headers, "/pets?limit=3")

    assert [pet for page, _ in pages for pet in page] == pets
    assert [link is not None for _, link in pages] == [True, False]


def test_no_next_link_when_everything_fits(client, auth_headers):
    create_pet(client, auth_headers, name="Bunny")

    response = client.get("/pets", headers=auth_headers)

    assert response.status_code == 200
    assert "Link" not in response.headers


def test_species_filter_keeps_only_that_species(client, auth_headers, other_headers):
    dog = create_pet(client, auth_headers, name="Rex", species="dog")
    create_pet(client, auth_headers, name="Tom", species="cat")
    create_pet(client, auth_headers, name="Nameless")
    other_dog = create_pet(client, auth_headers, name="Fido", species="dog")
    create_pet(client, other_headers, name="Alice's dog", species="dog")

    response = client.get("/pets?species=dog", headers=auth_headers)

    assert response.status_code == 200
    assert response.get_json() == [dog, other_dog]


def test_species_filter_is_kept_across_pages(client, auth_headers):
    species = "guinea pig & co"
    wanted = []
    for n in range(7):
        wanted.append(create_pet(client, auth_headers, name=f"wanted {n}", species=species))
        create_pet(client, auth_headers, name=f"other {n}", species="dog")

    first = client.get("/pets", query_string={"species": species, "limit": 3}, headers=auth_headers)
    pages = follow_pages(client, auth_headers, next_link(first))

    assert first.get_json() == wanted[:3]
    assert [pet for page, _ in pages for pet in page] == wanted[3:]
    assert [len(page) for page, _ in pages] == [3, 1]


def test_empty_species_filter_is_rejected(client, auth_headers):
    response = client.get("/pets?species=", headers=auth_headers)

    assert_validation_error(response, "species")


# Authentication


PETS_ROUTES = [
    ("get", "/my-pets"),
    ("get", "/pets"),
    ("post", "/pets"),
    ("get", "/pets/{id}"),
    ("patch", "/pets/{id}"),
    ("put", "/pets/{id}"),
    ("delete", "/pets/{id}"),
]


@pytest.mark.parametrize("method, path", PETS_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dHJhdmlzOnB3"])
def test_pets_routes_need_a_valid_token(client, auth_headers, database, method, path, authorization):
    pet = create_pet(client, auth_headers, name="Bunny", species="dog")
    before = pet_rows(database)
    headers = {"Authorization": authorization} if authorization else {}

    response = getattr(client, method)(
        path.format(id=pet["id"]), json={"name": "Stolen", "species": "rat"}, headers=headers
    )

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="jwt-server"')
    assert "Bunny" not in response.get_data(as_text=True)
    assert pet_rows(database) == before
