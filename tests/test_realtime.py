"""The socket server's bookkeeping, in process: what a socket is sent while changes commit around it."""
from jwt_server import auth, events, realtime
from jwt_server.db import get_db


class CommitsBetweenStatements:
    """The app's connection, except that another request commits a change after each statement it runs."""

    def __init__(self, connection, change):
        self.connection, self.change = connection, change

    def execute(self, *args):
        cursor = self.connection.execute(*args)
        self.change()
        return cursor


def test_a_socket_bound_while_changes_commit_gets_every_event_once_in_order(app, make_app, travis, monkeypatch):
    server = app.extensions["jwt_server.realtime"]
    other = make_app().test_client()  # another worker, say: a request of its own, on a connection of its own
    sent = []
    monkeypatch.setattr(server.server, "emit", lambda name, data, to: sent.append((to, name, data.get("event_id"))))
    added = []

    def add_pet():
        answer = other.post("/pets", json={"name": f"Pet {len(added)}"}, headers=travis.headers)
        assert answer.status_code == 201, answer.get_json()
        added.append(answer.get_json()["id"])

    add_pet()  # event 1, which the socket has seen
    add_pet()  # event 2, which it missed while it was away
    server.sockets["sid"] = realtime.Socket("127.0.0.1")
    server.pending["127.0.0.1"] += 1
    with app.app_context():
        user, claims = auth.user_for_token(travis.access)
        connection = get_db()
        with monkeypatch.context() as patch:
            # Catching up reads the outbox while events 3, 4... commit.
            patch.setattr(realtime, "get_db", lambda: CommitsBetweenStatements(connection, add_pet))
            server.bind("sid", user, claims, 1)
        # Then the listener reads the rows it has not seen, as after each commit.
        server.deliver(events.after(get_db(), 0))

    assert len(added) > 2  # some commits did fall between the statements
    assert [event_id for to, name, event_id in sent] == list(range(2, len(added) + 1)), sent
    assert all(to == "sid" and name == "pet_created" for to, name, event_id in sent), sent
