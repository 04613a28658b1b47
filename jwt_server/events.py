"""The realtime outbox: what happened to a user, written with the change itself.

Functions here take the connection, like sessions.py. A pet's change and
its event commit or roll back together; the socket server (realtime.py)
reads new rows after each commit and delivers them. Events about a user's
pets carry ``event_id``, 1, 2, 3... per user; ``session_ended`` rows carry
none and are never replayed: they tell every worker which sockets to close.
"""
import json
import time

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
    db.execute(
        "INSERT INTO realtime_events (user_id, event_id, name, data, created_at) VALUES (?, ?, ?, ?, ?)",
        (user_id, event_id, name, json.dumps(data), int(time.time())),
    )
    return event_id


def session_ended(db, user_id, session_id, code):
    """Tell the sockets of session ``session_id`` to close, saying ``code``."""
    data = {"code": code, "session_id": session_id}
    db.execute(
        "INSERT INTO realtime_events (user_id, event_id, name, data, created_at) VALUES (?, NULL, ?, ?, ?)",
        (user_id, "session_ended", json.dumps(data), int(time.time())),
    )


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
    ``newest`` is the user's last event_id.
    """
    rows = db.execute(
        """
        SELECT event_id, name, data FROM realtime_events
        WHERE user_id = ? AND event_id > ? AND created_at >= ? ORDER BY event_id
        """,
        (user_id, last_event_id, int(time.time()) - replay_seconds),
    ).fetchall()
    last = newest(db, user_id)
    oldest = rows[0]["event_id"] if rows else last + 1
    return rows, oldest, last


def prune(db, replay_seconds):
    """Delete a batch of rows older than the replay window."""
    db.execute(
        "DELETE FROM realtime_events WHERE id IN (SELECT id FROM realtime_events WHERE created_at < ? LIMIT ?)",
        (int(time.time()) - replay_seconds, PRUNE_BATCH),
    )
