"""socket.io-client from npm, in Node, against the real gunicorn: a client
written as the original socket.io server's clients were (connect,
``authenticate``, listen) works unchanged, and so does one that hands its
token over in the connect packet (tests/realtime-node/client.js)."""
import json
import os
import queue
import signal
import subprocess
import threading

import pytest

from tests.helpers import PROJECT_ROOT, npm_ci
from tests.servers import launch, register_and_login

pytestmark = pytest.mark.e2e

NODE_CLIENT = PROJECT_ROOT / "tests" / "realtime-node"
WAIT = 10  # seconds to wait for something that must happen (Node starts in a fraction of that)
QUIET = 0.5  # seconds of silence that show something did not happen
# The reason socket.io-client gives when the server ended the socket; it does not reconnect after it.
SERVER_DISCONNECT = {"reason": "io server disconnect", "active": False}


class NodeClient:
    """client.js in its own Node process; what it reports, line by line, in a queue."""

    def __init__(self, server, token, how):
        environment = {**os.environ, "JWT_SERVER_URL": server.base_url, "TOKEN": token}
        self.process = subprocess.Popen(
            ["node", "client.js", how], cwd=NODE_CLIENT, env=environment, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.reports = queue.Queue()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.process.stdout:
            report = json.loads(line)
            self.reports.put((report["event"], report["data"]))
        self.reports.put(("exit", None))

    def next(self, timeout=WAIT):
        try:
            return self.reports.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the Node client reported nothing within {timeout} s")

    def expect(self, name, timeout=WAIT):
        event, data = self.next(timeout)
        assert event == name, (event, data, self.process.stderr.read() if event == "exit" else "")
        return data

    def silent(self, seconds=QUIET):
        try:
            report = self.reports.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected report {report}")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WAIT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    npm_ci(NODE_CLIENT)
    running = launch(tmp_path_factory.mktemp("realtime-node"), workers=2)
    yield running
    running.stop()


@pytest.fixture
def node_client():
    started = []

    def start(server, token, how="authenticate"):
        started.append(NodeClient(server, token, how))
        return started[-1]

    yield start
    for client in started:
        client.close()


@pytest.fixture
def username(request):
    """A username of this test's own (the module shares one server)."""
    return f"n{abs(hash(request.node.nodeid)) % 10**12}"


def add_pet(server, token, name="Bunny", species="dog"):
    created = server.call("POST", "/pets", {"name": name, "species": species}, token=token)
    assert created.status == 201, created.body
    return created.body


def test_the_socketio_jwt_flow_authenticates_then_receives_pet_events(server, node_client, username):
    user_id, token = register_and_login(server, username)
    client = node_client(server, token)

    assert client.expect("connect") is None
    assert client.expect("authenticated") == {"user_id": user_id}
    pet = add_pet(server, token)
    renamed = server.call("PATCH", f"/pets/{pet['id']}", {"name": "Bugs"}, token=token).body
    assert server.call("DELETE", f"/pets/{pet['id']}", token=token).status == 204

    assert client.expect("pet_created") == {**pet, "event_id": 1}
    assert client.expect("pet_updated") == {**renamed, "event_id": 2}
    assert client.expect("pet_deleted") == {"id": pet["id"], "event_id": 3}


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_a_bad_token_in_authenticate_is_unauthorized_then_a_server_disconnect(server, node_client, username, token):
    _, owner_token = register_and_login(server, username)
    client = node_client(server, token)

    client.expect("connect")
    unauthorized = client.expect("unauthorized")
    assert set(unauthorized) == {"message", "code"} and unauthorized["code"] == "invalid_token"
    assert unauthorized["message"]
    assert client.expect("disconnect") == SERVER_DISCONNECT
    add_pet(server, owner_token)
    assert client.expect("exit") is None


def test_the_auth_payload_authenticates_at_connect(server, node_client, username):
    _, token = register_and_login(server, username)
    client = node_client(server, token, "payload")

    client.expect("connect")
    pet = add_pet(server, token)

    assert client.expect("pet_created") == {**pet, "event_id": 1}
    assert client.silent()


def test_a_bad_token_in_the_auth_payload_is_a_connect_error_with_the_code(server, node_client, username):
    _, token = register_and_login(server, username)
    assert server.call("POST", "/auth/logout", token=token).status == 204
    client = node_client(server, token, "payload")

    refused = client.expect("connect_error")

    assert refused["data"]["code"] == "invalid_token" and refused["data"]["detail"]
    assert set(refused["data"]) == {"code", "detail"}
    assert refused["active"] is False  # socket.io-client gives up: no retry with the same token
    assert client.expect("exit") is None


@pytest.mark.parametrize("how", ["authenticate", "payload"])
def test_a_logout_is_session_ended_then_io_server_disconnect(server, node_client, username, how):
    _, token = register_and_login(server, username)
    client = node_client(server, token, how)
    client.expect("connect")
    if how == "authenticate":
        client.expect("authenticated")
    add_pet(server, token)
    client.expect("pet_created")

    assert server.call("POST", "/auth/logout", token=token).status == 204

    assert client.expect("session_ended") == {"code": "logged_out"}
    assert client.expect("disconnect") == SERVER_DISCONNECT
    assert client.expect("exit") is None


def test_other_users_events_never_reach_the_node_client(server, node_client, username):
    _, token = register_and_login(server, username)
    _, stranger = register_and_login(server, username + "x")
    client = node_client(server, token)
    client.expect("connect")
    client.expect("authenticated")

    add_pet(server, stranger)
    mine = add_pet(server, token)

    assert client.expect("pet_created") == {**mine, "event_id": 1}
    assert client.silent()


@pytest.mark.parametrize("how", ["authenticate", "payload"])
def test_after_a_dropped_connection_it_reconnects_and_first_gets_what_it_missed(start_gunicorn, node_client, how):
    npm_ci(NODE_CLIENT)
    server = start_gunicorn(workers=1)
    # A second gunicorn on the same database takes the change while the first restarts its worker.
    other = start_gunicorn(workers=1, database=server.database)
    _, token = register_and_login(server, "travis")
    client = node_client(server, token, how)
    client.expect("connect")
    if how == "authenticate":
        client.expect("authenticated")
    add_pet(server, token, "Before")
    assert client.expect("pet_created")["event_id"] == 1

    [worker] = server.worker_pids()
    os.kill(worker, signal.SIGKILL)  # the connection drops; gunicorn starts another worker
    assert client.expect("disconnect") == {"reason": "transport close", "active": True}
    missed = add_pet(other, token, "Missed")

    # The new worker never saw it live: it comes from the replay, before anything live.
    assert client.expect("connect", timeout=2 * WAIT) is None
    if how == "authenticate":
        client.expect("authenticated")
    assert client.expect("pet_created") == {**missed, "event_id": 2}
    live = add_pet(server, token, "Live")
    assert client.expect("pet_created") == {**live, "event_id": 3}
    assert client.silent()
