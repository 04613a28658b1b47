"""Passwords are compared after Unicode NFKC normalization, wherever they are set or checked.

The 8-72 byte rule applies to the normalized form, which is what gets hashed;
a hash stored before normalization still accepts the password exactly as it
was set (and is replaced by a hash of the normalized form at that login).
"""
import unicodedata
from contextlib import closing

import bcrypt
import pytest

from tests.helpers import PASSWORD, assert_problem, can_log_in, log_in, open_database, register

NFC_PASSWORD = unicodedata.normalize("NFC", "crème brûlée à la façon")
NFD_PASSWORD = unicodedata.normalize("NFD", NFC_PASSWORD)



def query(app, sql, *parameters):
    with closing(open_database(app.config["DATABASE"])) as database:
        cursor = database.execute(sql, parameters)
        rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        database.commit()
        return rows


def test_the_same_password_typed_as_nfc_or_nfd_is_one_password(client):
    assert NFC_PASSWORD != NFD_PASSWORD
    register(client, password=NFD_PASSWORD)

    assert can_log_in(client, "travis", NFC_PASSWORD)
    assert can_log_in(client, "travis", NFD_PASSWORD)
    assert can_log_in(client, "travis", "crème brûlée à la façon")


def test_a_hash_stored_before_normalization_accepts_the_password_as_it_was_set(app):
    client = app.test_client()
    user = register(client)
    raw_hash = bcrypt.hashpw(NFD_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    query(app, "UPDATE users SET password_hash = ? WHERE id = ?", raw_hash, user["id"])

    assert can_log_in(client, "travis", NFD_PASSWORD)

    # That login re-hashed the normalized form: now every typing works.
    [(stored,)] = query(app, "SELECT password_hash FROM users WHERE id = ?", user["id"])
    assert stored != raw_hash
    assert bcrypt.checkpw(unicodedata.normalize("NFKC", NFD_PASSWORD).encode(), stored.encode())
    assert can_log_in(client, "travis", NFC_PASSWORD)


def test_a_failed_login_with_two_forms_counts_as_one_attempt(make_app):
    app = make_app(LOGIN_MAX_FAILURES=2)
    client = app.test_client()
    register(client)
    wrong_nfd = unicodedata.normalize("NFD", "mauvais mot de passé")

    first = client.post("/auth", json={"username": "travis", "password": wrong_nfd})

    assert_problem(first, 401, "invalid_credentials")
    assert query(app, "SELECT failures FROM login_throttle") == [(1,)]
    assert can_log_in(client, "travis", PASSWORD)


@pytest.mark.parametrize(
    "password, status",
    [
        pytest.param("\u0065\u0301" * 25, 201, id="75-bytes-nfd-50-bytes-nfkc"),
        pytest.param("\ufb00" * 3, 422, id="9-bytes-of-ligatures-6-bytes-nfkc"),
    ],
)
def test_the_length_rule_applies_to_the_normalized_password(client, password, status):
    response = client.post("/users", json={"username": "travis", "password": password})

    assert response.status_code == status, response.get_data(as_text=True)
    if status == 201:
        assert can_log_in(client, "travis", unicodedata.normalize("NFC", password))


def test_a_password_change_to_an_nfd_password_accepts_its_nfc_typing(client):
    register(client)
    headers = log_in(client).headers
    change = {"current_password": PASSWORD, "new_password": NFD_PASSWORD}

    assert client.put("/users/me/password", json=change, headers=headers).status_code == 204

    assert can_log_in(client, "travis", NFC_PASSWORD)
