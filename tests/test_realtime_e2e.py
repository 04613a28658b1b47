"""Socket.IO at /socket.io/ on the real gunicorn: authentication both ways,
live pet events, session endings, token expiry, replay, origins, limits."""
import queue
import sqlite3
import time

import engineio
import pytest
import socketio

from tests.servers import launch, register_and_login

pytestmark = pytest.mark.e2e

# What python-socketio calls a Socket.IO disconnect from the server ("io server disconnect" in JS).
SERVER_DISCONNECT = socketio.Client.reason.SERVER_DISCONNECT
WAIT = 5  # seconds to wait for something that must happen (it takes milliseconds)
QUIET = 0.5  # seconds of silence that show something did not happen


def refusal(packet):
    """What socket.io-client hands an app as ``err.data``: the refusal packet's "data"."""
    return packet.get("data") if isinstance(packet, dict) else packet


class InOrderEngineIOClient(engineio.Client):
    """engineio's client hands each message to a thread of its own, so two
    events sent back to back could reach the queue in either order (a replay
    test saw event 3 before event 2). Handled one by one, in the reading
    thread, they arrive in the order the server sent them, as in a browser."""

    def _trigger_event(self, event, *args, **kwargs):
        return super()._trigger_event(event, *args, **{**kwargs, "run_async": False})


class InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return InOrderEngineIOClient


class Listener:
    """A python-socketio client that records every event in a queue, in the order sent."""

    def __init__(self, server, auth=None, origin=None):
        self.events = queue.Queue()
        self.client = InOrderClient(
            reconnection=False, websocket_extra_options={"origin": origin} if origin else {}
        )
        self.client.on("*", lambda name, data=None: self.events.put((name, data)))
        self.client.on("connect_error", lambda packet=None: self.events.put(("connect_error", refusal(packet))))
        self.client.on("disconnect", lambda reason=None: self.events.put(("disconnect", reason)))
        self.url, self.auth = server.base_url, auth

    def connect(self):
        self.client.connect(self.url, transports=["websocket"], auth=self.auth, wait_timeout=WAIT)
        return self

    def next(self, timeout=WAIT):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no event within {timeout} s")

    def expect(self, name, timeout=WAIT):
        event, data = self.next(timeout)
        assert event == name, (event, data)
        return data

    def silent(self, seconds=QUIET):
        try:
            event = self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected event {event}")

    def close(self):
        self.client.disconnect()


@pytest.fixture
def listeners():
    opened = []

    def open_listener(server, auth=None, origin=None, connect=True):
        listener = Listener(server, auth, origin)
        opened.append(listener)
        return listener.connect() if connect else listener

    yield open_listener
    for listener in opened:
        listener.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One gunicorn (two workers) for the tests that need nothing special; each test uses its own users."""
    running = launch(tmp_path_factory.mktemp("realtime"), workers=2)
    yield running
    running.stop()


@pytest.fixture
def username(request):
    """A username of this test's own (the module shares one server)."""
    return f"u{abs(hash(request.node.nodeid)) % 10**12}"


def log_in(server, username, password="correct horse battery"):
    answer = server.call("POST", "/auth", {"username": username, "password": password})
    assert answer.status == 200, answer.body
    return answer.body


def add_pet(server, token, name="Bunny"):
    created = server.call("POST", "/pets", {"name": name}, token=token)
    assert created.status == 201, created.body
    return created.body


def test_an_authenticated_socket_gets_its_owners_pet_events_in_order(server, listeners, username):
    _, token = register_and_login(server, username)
    socket = listeners(server, auth={"token": token})

    pet = add_pet(server, token)
    renamed = server.call("PATCH", f"/pets/{pet['id']}", {"name": "Bugs"}, token=token)
    deleted = server.call("DELETE", f"/pets/{pet['id']}", token=token)

    assert renamed.status == 200 and deleted.status == 204
    assert socket.next() == ("pet_created", {**pet, "event_id": 1})
    assert socket.next() == ("pet_updated", {**renamed.body, "event_id": 2})
    assert socket.next() == ("pet_deleted", {"id": pet["id"], "event_id": 3})


def test_another_users_events_never_arrive(server, listeners, username):
    _, travis = register_and_login(server, username)
    _, alice = register_and_login(server, username + "a")
    socket = listeners(server, auth={"token": travis})

    add_pet(server, alice)

    assert socket.silent()


def test_a_change_that_fails_is_not_announced(server, listeners, username):
    _, token = register_and_login(server, username)
    socket = listeners(server, auth={"token": token})

    assert server.call("POST", "/pets", {"name": ""}, token=token).status == 422
    assert server.call("DELETE", "/pets/12345", token=token).status == 404

    assert socket.silent()


def test_every_socket_of_the_owner_gets_the_event_across_workers(start_gunicorn, listeners):
    server = start_gunicorn(workers=3)
    _, token = register_and_login(server, "travis")
    sockets = [listeners(server, auth={"token": token}) for _ in range(6)]

    pet = add_pet(server, token)

    for socket in sockets:
        assert socket.next() == ("pet_created", {**pet, "event_id": 1})


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", ""])
def test_a_bad_token_in_the_auth_payload_is_a_connect_error(server, listeners, token, username):
    socket = listeners(server, auth={"token": token}, connect=False)

    with pytest.raises(socketio.exceptions.ConnectionError):
        socket.connect()

    data = socket.expect("connect_error")
    assert data["code"] == "invalid_token" and data["detail"]


def test_a_logged_out_token_is_a_connect_error(server, listeners, username):
    _, token = register_and_login(server, username)
    assert server.call("POST", "/auth/logout", token=token).status == 204
    socket = listeners(server, auth={"token": token}, connect=False)

    with pytest.raises(socketio.exceptions.ConnectionError):
        socket.connect()

    assert socket.expect("connect_error")["code"] == "invalid_token"


@pytest.mark.parametrize("auth", [None, {}, {"token": None}])
def test_authenticate_event_authenticates_a_socket_that_connected_without_a_token(server, listeners, auth, username):
    _, token = register_and_login(server, username)
    socket = listeners(server, auth=auth)

    socket.client.emit("authenticate", {"token": token})

    assert socket.next()[0] == "authenticated"
    pet = add_pet(server, token)
    assert socket.next() == ("pet_created", {**pet, "event_id": 1})


def test_an_unauthenticated_socket_receives_nothing(server, listeners, username):
    _, token = register_and_login(server, username)
    socket = listeners(server)

    add_pet(server, token)

    assert socket.silent()
    assert socket.client.connected


def test_a_bad_authenticate_is_unauthorized_then_a_server_disconnect(server, listeners, username):
    socket = listeners(server)

    socket.client.emit("authenticate", {"token": "garbage"})

    data = socket.expect("unauthorized")
    assert data["code"] == "invalid_token" and data["message"]
    assert socket.expect("disconnect") == SERVER_DISCONNECT


def test_a_bad_authenticate_on_an_authenticated_socket_disconnects_it(server, listeners, username):
    _, token = register_and_login(server, username)
    socket = listeners(server, auth={"token": token})

    socket.client.emit("authenticate", {"token": "garbage"})

    assert socket.expect("unauthorized")["code"] == "invalid_token"
    assert socket.expect("disconnect") == SERVER_DISCONNECT


@pytest.mark.slow
def test_silence_for_15_seconds_is_unauthorized_and_a_disconnect(server, listeners, username):
    socket = listeners(server)

    assert socket.silent(13)
    data = socket.expect("unauthorized", timeout=5)
    assert data["code"] == "authentication_timeout"
    assert socket.expect("disconnect") == SERVER_DISCONNECT


def session_ids(server, token):
    return [session["id"] for session in server.call("GET", "/users/me/sessions", token=token).body]


def test_a_logout_ends_that_sessions_sockets_only(server, listeners, username):
    register_and_login(server, username)
    first, second = log_in(server, username)["access_token"], log_in(server, username)["access_token"]
    ending = listeners(server, auth={"token": first})
    staying = listeners(server, auth={"token": second})

    started = time.monotonic()
    assert server.call("POST", "/auth/logout", token=first).status == 204

    assert ending.expect("session_ended") == {"code": "logged_out"}
    assert ending.expect("disconnect") == SERVER_DISCONNECT
    assert time.monotonic() - started < 1
    assert staying.silent() and staying.client.connected


@pytest.mark.parametrize("how, code", [
    ("revoke_one", "session_revoked"),
    ("revoke_all", "session_revoked"),
    ("password", "password_changed"),
    ("delete_account", "account_deleted"),
    ("reuse", "refresh_token_reused"),
])
def test_each_way_a_session_ends_reaches_its_sockets(server, listeners, how, code, username):
    register_and_login(server, username)
    victim = log_in(server, username)
    other = log_in(server, username)["access_token"]
    socket = listeners(server, auth={"token": victim["access_token"]})
    victim_session = session_ids(server, victim["access_token"])[-2]

    if how == "revoke_one":
        answer = server.call("DELETE", f"/users/me/sessions/{victim_session}", token=other)
    elif how == "revoke_all":
        answer = server.call("DELETE", "/users/me/sessions", token=other)
    elif how == "password":
        answer = server.call("PUT", "/users/me/password", {
            "current_password": "correct horse battery", "new_password": "another long passphrase"}, token=other)
    elif how == "delete_account":
        answer = server.call("DELETE", "/users/me", {"password": "correct horse battery"}, token=other)
    else:
        assert server.call("POST", "/auth/refresh", {"refresh_token": victim["refresh_token"]}).status == 200
        answer = server.call("POST", "/auth/refresh", {"refresh_token": victim["refresh_token"]})
    assert answer.status in (204, 401), answer.body

    assert socket.expect("session_ended") == {"code": code}
    assert socket.expect("disconnect") == SERVER_DISCONNECT


def test_disabling_an_account_ends_its_sockets(server, listeners, tmp_path, username):
    _, admin = register_and_login(server, username + "r")
    with sqlite3.connect(server.database) as connection:
        connection.execute("UPDATE users SET is_admin = 1 WHERE username = ?", (username + "r",))
    travis_id, token = register_and_login(server, username)
    socket = listeners(server, auth={"token": token})

    assert server.call("PATCH", f"/users/{travis_id}", {"disabled": True}, token=admin).status == 200

    assert socket.expect("session_ended") == {"code": "account_disabled"}
    assert socket.expect("disconnect") == SERVER_DISCONNECT


def test_at_the_tokens_exp_the_socket_ends_unless_reauthenticated(start_gunicorn, listeners):
    server = start_gunicorn(workers=2, ACCESS_TOKEN_TTL="2")
    register_and_login(server, "travis")
    expiring = listeners(server, auth={"token": log_in(server, "travis")["access_token"]})
    renewed_tokens = log_in(server, "travis")
    renewed = listeners(server, auth={"token": renewed_tokens["access_token"]})

    time.sleep(1)
    fresh = server.call("POST", "/auth/refresh", {"refresh_token": renewed_tokens["refresh_token"]}).body
    renewed.client.emit("authenticate", {"token": fresh["access_token"]})
    assert renewed.expect("authenticated")

    assert expiring.expect("session_ended", timeout=4) == {"code": "token_expired"}
    assert expiring.expect("disconnect") == SERVER_DISCONNECT
    assert renewed.silent(0.8) and renewed.client.connected


def test_a_token_of_another_user_does_not_take_over_a_socket(server, listeners, username):
    _, travis = register_and_login(server, username)
    _, alice = register_and_login(server, username + "a")
    socket = listeners(server, auth={"token": travis})

    socket.client.emit("authenticate", {"token": alice})

    assert socket.expect("unauthorized")["code"] == "invalid_token"
    assert socket.expect("disconnect") == SERVER_DISCONNECT


def test_a_reconnecting_client_first_gets_what_it_missed_in_order(server, listeners, username):
    _, token = register_and_login(server, username)
    first = add_pet(server, token, "One")
    second = add_pet(server, token, "Two")
    third = add_pet(server, token, "Three")

    socket = listeners(server, auth={"token": token, "last_event_id": 1})
    live = add_pet(server, token, "Four")

    assert socket.next() == ("pet_created", {**second, "event_id": 2})
    assert socket.next() == ("pet_created", {**third, "event_id": 3})
    assert socket.next() == ("pet_created", {**live, "event_id": 4})
    assert first["id"] not in {second["id"], third["id"]}


def test_the_authenticate_event_can_carry_last_event_id(server, listeners, username):
    _, token = register_and_login(server, username)
    pet = add_pet(server, token)
    socket = listeners(server)

    socket.client.emit("authenticate", {"token": token, "last_event_id": 0})

    assert socket.next()[0] == "authenticated"
    assert socket.next() == ("pet_created", {**pet, "event_id": 1})


def test_events_older_than_the_replay_window_give_replay_incomplete(start_gunicorn, listeners):
    server = start_gunicorn(workers=2, REALTIME_REPLAY_SECONDS="1")
    _, token = register_and_login(server, "travis")
    add_pet(server, token)
    time.sleep(2.2)
    newer = add_pet(server, token)

    socket = listeners(server, auth={"token": token, "last_event_id": 0})

    assert socket.next() == ("replay_incomplete", {"oldest_event_id": 2})
    assert socket.silent()
    assert newer["id"]


def test_a_foreign_origin_is_refused_and_an_allowed_one_accepted(start_gunicorn, listeners):
    server = start_gunicorn(workers=2, CORS_ORIGINS="https://app.example.com")
    _, token = register_and_login(server, "travis")

    foreign = listeners(server, auth={"token": token}, origin="https://evil.example.com", connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        foreign.connect()
    allowed = listeners(server, auth={"token": token}, origin="https://app.example.com")
    assert allowed.client.connected


def test_unauthenticated_sockets_are_bounded_per_address(start_gunicorn, listeners):
    server = start_gunicorn(workers=1)
    for _ in range(16):
        listeners(server)

    extra = listeners(server, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        extra.connect()
    assert extra.expect("connect_error")["code"] == "too_many_connections"
    assert server.call("GET", "/health").status == 200


def test_on_postgresql_events_and_endings_cross_hosts(tmp_path, postgres_server, listeners):
    """Two gunicorns on one PostgreSQL database (two hosts, as far as the sockets can tell)."""
    postgres_server.empty(postgres_server.template)
    url = postgres_server.url(postgres_server.template)
    host_a = launch(tmp_path, workers=2, name="host-a", DATABASE_URL=url)
    host_b = launch(tmp_path, workers=2, name="host-b", DATABASE_URL=url)
    try:
        _, token = register_and_login(host_b, "travis")
        socket = listeners(host_a, auth={"token": token})
        other_session = listeners(host_a, auth={"token": log_in(host_b, "travis")["access_token"]})

        pet = add_pet(host_b, token)
        assert socket.next() == ("pet_created", {**pet, "event_id": 1})
        assert other_session.next() == ("pet_created", {**pet, "event_id": 1})

        assert host_b.call("POST", "/auth/logout", token=token).status == 204
        assert socket.expect("session_ended") == {"code": "logged_out"}
        assert socket.expect("disconnect") == SERVER_DISCONNECT
        assert other_session.silent() and other_session.client.connected

        replayed = listeners(host_b, auth={"token": log_in(host_a, "travis")["access_token"], "last_event_id": 0})
        assert replayed.next() == ("pet_created", {**pet, "event_id": 1})
    finally:
        host_a.stop()
        host_b.stop()
