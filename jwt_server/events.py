"""The realtime outbox: what happened to a user, written with the change itself.

Functions here take the connection, like sessions.py. A pet's change and
its event commit or roll back together; the socket server (realtime.py)
reads new rows after each commit and delivers them. Events about a user's
pets carry ``event_id``, 1, 2, 3... per user; ``session_ended`` rows carry
none and are never replayed: they tell every worker which sockets to close.
"""
import json
import time

from .db import notify_on_commit

# The PostgreSQL channel that carries each new row to every worker (fanout.py).
CHANNEL = "jwt_server_events"

PRUNE_BATCH = 500


def record(db, user_id, name, data):
    """Append event ``name`` for ``user_id`` (call inside the change's transaction)."""
    event_id = db.execute(
        """
        INSERT INTO event_counters (user_id, last_event_id) VALUES (?, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = event_counters.last_event_id + 1
        RETURNING last_event_id
        """,
        (user_id,),
    ).fetchone()[0]
    append(db, user_id, event_id, name, data)
    return event_id


def session_ended(db, user_id, session_id, code):
    """Tell the sockets of session ``session_id`` to close, saying ``code``."""
    append(db, user_id, None, "session_ended", {"code": code, "session_id": session_id})


def append(db, user_id, event_id, name, data):
    row = {"user_id": user_id, "event_id": event_id, "name": name, "data": json.dumps(data)}
    row["id"] = db.execute(
        """
        INSERT INTO realtime_events (user_id, event_id, name, data, created_at)
        VALUES (:user_id, :event_id, :name, :data, :created_at) RETURNING id
        """,
        {**row, "created_at": int(time.time())},
    ).fetchone()[0]
    # On PostgreSQL every worker of every host hears of the row when it commits.
    notify_on_commit(db, CHANNEL, json.dumps(row))


def since(db, created_at):
    """Every row written since ``created_at`` (seconds), for a listener that lost its connection."""
    return db.execute(
        "SELECT id, user_id, event_id, name, data FROM realtime_events WHERE created_at >= ? ORDER BY id",
        (created_at,),
    ).fetchall()


def after(db, last_id):
    """Every row written after row ``last_id``, in order."""
    return db.execute(
        "SELECT id, user_id, event_id, name, data FROM realtime_events WHERE id > ? ORDER BY id", (last_id,)
    ).fetchall()


def last_id(db):
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM realtime_events").fetchone()[0]


def newest(db, user_id):
    """The user's last event_id (0 before any)."""
    row = db.execute("SELECT last_event_id FROM event_counters WHERE user_id = ?", (user_id,)).fetchone()
    return row[0] if row else 0


def missed(db, user_id, last_event_id, replay_seconds):
    """``(events, oldest, newest)``: the user's events after ``last_event_id`` still kept.

    ``oldest`` is the first event_id the client can still get; when it is
    past ``last_event_id + 1`` some were pruned and the client must reload.
    ``newest`` is the user's last event_id: the socket is live from there on.

    The two reads are two statements, and a change may commit between them.
    ``newest`` is read first, so every event up to it is in the rows read
    next (or was pruned): read last, it could name an event committed after
    the rows were read, and the socket, counting it as sent, would skip it
    when the listener delivers it.
    """
    last = newest(db, user_id)
    rows = db.execute(
        """
        SELECT event_id, name, data FROM realtime_events
        WHERE user_id = ? AND event_id > ? AND created_at >= ? ORDER BY event_id
        """,
        (user_id, last_event_id, int(time.time()) - replay_seconds),
    ).fetchall()
    if rows:
        last = max(last, rows[-1]["event_id"])
    oldest = rows[0]["event_id"] if rows else last + 1
    return rows, oldest, last


def prune(db, replay_seconds):
    """Delete a batch of rows older than the replay window."""
    db.execute(
        "DELETE FROM realtime_events WHERE id IN (SELECT id FROM realtime_events WHERE created_at < ? LIMIT ?)",
        (int(time.time()) - replay_seconds, PRUNE_BATCH),
    )
