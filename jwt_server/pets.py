"""The pets blueprint: each user's own pets. Someone else's pet is a 404."""
from flask import Blueprint, current_app, g, request, url_for

from . import events
from .auth import token_required
from .db import MAX_ID, IntegrityError, get_db, serialize, transaction
from .errors import APIError, validation_error
from .exceptions import AccountGone
from .validation import check_pet_name, check_species, field_error, query_int, read_body

bp = Blueprint("pets", __name__)

PET_ID = "<int:pet_id>"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000

# One statement serves PATCH and PUT: a flag per column says whether it changes.
UPDATE_PET = """
    UPDATE pets
    SET name = CASE WHEN :set_name THEN :name ELSE name END,
        species = CASE WHEN :set_species THEN :species ELSE species END
    WHERE id = :id AND user_id = :user_id
    RETURNING id, name, species
"""


def pet_not_found():
    return APIError(404, "pet_not_found", "You have no pet with this id.")


def check_pet_id(pet_id):
    """An id past SQLite's integers names no pet (and would overflow the binding)."""
    if pet_id > MAX_ID:
        raise pet_not_found()


def pet_fields(body, *, required):
    """The valid, trimmed ``name`` and ``species`` present in ``body``, or a 422.

    With ``required`` (POST, PUT) ``name`` must be there and a missing
    ``species`` means null; otherwise (PATCH) only the given fields count.
    """
    fields, errors = {}, []
    if required:
        body = {"species": None, **body}
        if "name" not in body:
            errors.append(field_error("name", "Name is required."))
    for field, check in (("name", check_pet_name), ("species", check_species)):
        if field not in body:
            continue
        if message := check(body[field]):
            errors.append(field_error(field, message))
        else:
            fields[field] = body[field].strip() if body[field] is not None else None
    if errors:
        raise validation_error(errors)
    return fields


def own_pet(sql, pet_id):
    """The row ``sql`` returns for the caller's pet ``pet_id``; 404 if there is none."""
    check_pet_id(pet_id)
    pet = get_db().execute(sql, (pet_id, g.user["id"])).fetchone()
    if pet is None:
        raise pet_not_found()
    return pet


def update_pet(pet_id, fields):
    check_pet_id(pet_id)
    db = get_db()
    with transaction(db):
        pet = db.execute(
            UPDATE_PET,
            {
                "set_name": "name" in fields,
                "name": fields.get("name"),
                "set_species": "species" in fields,
                "species": fields.get("species"),
                "id": pet_id,
                "user_id": g.user["id"],
            },
        ).fetchone()
        if pet is None:
            raise pet_not_found()
        events.record(db, g.user["id"], "pet_updated", dict(pet))
    return dict(pet)


@bp.get("/my-pets")
@token_required
def my_pets():
    rows = get_db().execute(
        "SELECT id, name, species FROM pets WHERE user_id = ? ORDER BY id", (g.user["id"],)
    ).fetchall()
    return [dict(row) for row in rows]


@bp.get("/pets")
@token_required
def list_pets():
    limit = query_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after = query_int("after", 0, 0, MAX_ID)
    species = request.args.get("species")
    if species is not None:
        if message := check_species(species):
            raise validation_error([field_error("species", message)])
        species = species.strip()  # as pet_fields stores it
    rows = get_db().execute(
        """
        SELECT id, name, species FROM pets
        WHERE user_id = :user_id AND id > :after AND (CAST(:species AS TEXT) IS NULL OR species = :species)
        ORDER BY id LIMIT :limit
        """,
        {"user_id": g.user["id"], "after": after, "species": species, "limit": limit + 1},
    ).fetchall()
    pets = [dict(row) for row in rows[:limit]]
    headers = {}
    if len(rows) > limit:
        next_page = url_for(".list_pets", limit=limit, after=pets[-1]["id"], species=species)
        headers["Link"] = f'<{next_page}>; rel="next"'
    return pets, 200, headers


def add_pet(db, user_id, fields, max_pets):
    """Insert the pet, if its owner still exists and has fewer than ``max_pets``.

    The count, the insert and its event are one transaction, so parallel
    requests cannot pass the limit together; the owner deleted meanwhile is
    a 401.
    """
    with transaction(db):
        serialize(db, f"pets of {user_id}")
        owned = db.execute("SELECT count(*) FROM pets WHERE user_id = ?", (user_id,)).fetchone()[0]
        if owned >= max_pets:
            raise APIError(409, "too_many_pets", f"You already have {max_pets} pets, the most this server keeps.")
        try:
            pet = db.execute(
                """
                INSERT INTO pets (user_id, name, species) SELECT id, ?, ? FROM users WHERE id = ?
                RETURNING id, name, species
                """,
                (fields["name"], fields["species"], user_id),
            ).fetchone()
        except IntegrityError:  # PostgreSQL: the owner was deleted after this statement's snapshot
            raise AccountGone() from None
        if pet is None:
            raise AccountGone()
        events.record(db, user_id, "pet_created", dict(pet))
    return dict(pet)


@bp.post("/pets")
@token_required
def create_pet():
    fields = pet_fields(read_body(), required=True)
    pet = add_pet(get_db(), g.user["id"], fields, current_app.config["MAX_PETS_PER_USER"])
    return pet, 201, {"Location": url_for(".get_pet", pet_id=pet["id"])}


@bp.get(f"/pets/{PET_ID}")
@token_required
def get_pet(pet_id):
    return dict(own_pet("SELECT id, name, species FROM pets WHERE id = ? AND user_id = ?", pet_id))


@bp.patch(f"/pets/{PET_ID}")
@token_required
def patch_pet(pet_id):
    return update_pet(pet_id, pet_fields(read_body(), required=False))


@bp.put(f"/pets/{PET_ID}")
@token_required
def put_pet(pet_id):
    return update_pet(pet_id, pet_fields(read_body(), required=True))


@bp.delete(f"/pets/{PET_ID}")
@token_required
def delete_pet(pet_id):
    db = get_db()
    with transaction(db):
        own_pet("DELETE FROM pets WHERE id = ? AND user_id = ? RETURNING id", pet_id)
        events.record(db, g.user["id"], "pet_deleted", {"id": pet_id})
    return "", 204
