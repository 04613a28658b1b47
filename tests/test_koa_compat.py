"""KOA_COMPAT=true: a form login gets the bare access token as text, as the Koa server answered."""
import pytest

from tests.helpers import PASSWORD, assert_problem, register


@pytest.fixture
def app(make_app):
    """conftest's app (and so its client and database fixtures), with KOA_COMPAT=true."""
    return make_app(KOA_COMPAT=True)


def form_login(client, password=PASSWORD, **fields):
    return client.post("/auth", data={"username": "travis", "password": password, **fields})


def test_form_login_answers_the_access_token_alone_as_text(client, database):
    register(client)
    response = form_login(client)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    token = response.get_data(as_text=True)
    assert token.count(".") == 2 and token.strip() == token
    # What the old clients do with it: send it as the Bearer token.
    me = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.get_json()["username"] == "travis"
    # The session is opened as usual; its refresh token is handed to no one.
    assert "refresh_token" not in response.headers.get("Set-Cookie", "")
    assert database.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


def test_json_login_gets_the_usual_token_response(client):
    register(client)
    response = client.post("/auth", json={"username": "travis", "password": PASSWORD})

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(response.get_json())


def test_form_login_errors_stay_problem_documents(client):
    register(client)

    assert_problem(form_login(client, password="wrong password"), 401, "invalid_credentials")
    assert_problem(client.post("/auth", data={"username": "travis"}), 422, "validation_error")


def test_without_koa_compat_a_form_login_gets_json(make_app):
    client = make_app(KOA_COMPAT=False).test_client()
    register(client)
    response = form_login(client)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "access_token" in response.get_json()

