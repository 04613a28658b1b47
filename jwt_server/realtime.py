"""Socket.IO at /socket.io/: live updates for browser apps, authenticated by access tokens.

Each worker holds its own sockets. A change (a pet, an ended session) is
written to the outbox (events.py) in the transaction that makes it; every
worker wakes when the database commits (fanout.py), reads the rows it has
not seen, and delivers them to its own sockets. Tokens are checked exactly
as on HTTP (auth.user_for_token), either in the connect packet's auth
payload or, as the clients of socketio-jwt did, by an ``authenticate`` event
within AUTH_TIMEOUT_SECONDS of connecting.
"""
from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import socketio

from . import auth, events, fanout, postgres
from .db import DatabaseError, get_db
from .errors import APIError

AUTH_TIMEOUT_SECONDS = 15
# Sockets that have not authenticated yet, per client address and worker:
# enough for a user's tabs, too few to hold a worker's connections hostage.
MAX_PENDING_PER_ADDRESS = 16
PING_INTERVAL_SECONDS = 25
PRUNE_EVERY_SECONDS = 60
# A PostgreSQL listener that (re)connects re-reads this much before it lost track.
RECONNECT_OVERLAP_SECONDS = 5
# The -wal file changes when a commit starts writing, a moment before the
# commit can be read: after each change the outbox is read again at these
# intervals (seconds), then the listener sleeps until the next change.
RECHECK_DELAYS = (0.005, 0.02, 0.1, 0.5)
_CONNECTED_WAIT_STEPS = 400


@dataclass
class Socket:
    address: str
    user_id: int | None = None
    session_id: int | None = None
    expires_at: int | None = None
    last_event_id: int = 0
    live: bool = False  # authenticated and caught up: live events may flow


class Unauthorized(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code, self.detail = code, detail


def async_mode():
    """gevent when gunicorn's gevent worker has patched the process, else threads."""
    try:
        from gevent import monkey
    except ImportError:
        return "threading"
    return "gevent" if monkey.is_module_patched("socket") else "threading"


class Realtime:
    def __init__(self, app):
        self.app = app
        origins = app.config["CORS_ORIGINS"]
        self.server = socketio.Server(
            async_mode=async_mode(),
            transports=["websocket"],
            cors_allowed_origins="*" if origins == "*" else list(origins),
            ping_interval=PING_INTERVAL_SECONDS,
            logger=False,
            engineio_logger=False,
        )
        self.sockets = {}
        self.by_user = defaultdict(set)
        self.pending = defaultdict(int)
        self.lock = threading.RLock()
        self.deadlines = []
        self.order = itertools.count()
        self.deadline_added = threading.Event()
        self.started = False
        self.seen_id = 0
        self.server.on("connect", self.on_connect)
        self.server.on("authenticate", self.on_authenticate)
        self.server.on("disconnect", self.on_disconnect)

    # Connecting and authenticating

    def on_connect(self, sid, environ, payload=None):
        self.start()
        payload = payload if isinstance(payload, dict) else {}
        address = environ.get("REMOTE_ADDR", "")
        token = payload.get("token")
        with self.lock:
            if token is None and self.pending[address] >= MAX_PENDING_PER_ADDRESS:
                raise socketio.exceptions.ConnectionRefusedError(
                    "too many unauthenticated sockets",
                    {"code": "too_many_connections", "detail": "Too many unauthenticated sockets from this address."},
                )
            self.sockets[sid] = Socket(address)
            self.pending[address] += 1
        # Also for a token in the payload: a socket that is somehow never bound is not kept.
        self.schedule(time.time() + AUTH_TIMEOUT_SECONDS, sid, "authentication_timeout")
        if token is None:
            return True
        try:
            user, claims, last_event_id = self.check(token, payload.get("last_event_id"))
        except Unauthorized as error:
            self.forget(sid)
            raise socketio.exceptions.ConnectionRefusedError(
                error.detail, {"code": error.code, "detail": error.detail}
            ) from None
        self.server.start_background_task(self.after_connect, sid, user, claims, last_event_id)
        return True

    def after_connect(self, sid, user, claims, last_event_id):
        """Bind and replay once the CONNECT packet is out, so that nothing precedes it."""
        for _ in range(_CONNECTED_WAIT_STEPS):
            if self.server.manager.is_connected(sid, "/"):
                self.bind(sid, user, claims, last_event_id)
                return
            self.server.sleep(0.005)

    def on_authenticate(self, sid, data=None):
        data = data if isinstance(data, dict) else {}
        try:
            user, claims, last_event_id = self.check(data.get("token"), data.get("last_event_id"))
            with self.lock:
                socket = self.sockets.get(sid)
                if socket is not None and socket.user_id not in (None, user["id"]):
                    raise Unauthorized("invalid_token", "The token is another user's.")
        except Unauthorized as error:
            self.server.emit("unauthorized", {"message": error.detail, "code": error.code}, to=sid)
            self.server.disconnect(sid)
            return
        self.server.emit("authenticated", {"user_id": user["id"]}, to=sid)
        self.bind(sid, user, claims, last_event_id)

    def check(self, token, last_event_id=None):
        """``(user, claims, last_event_id)`` for a valid token, checked live as on HTTP; else Unauthorized.

        Without a ``last_event_id`` from the client, it is the user's newest
        event at this moment: whatever happens from now on reaches the socket.
        """
        with self.app.app_context():
            try:
                user, claims = auth.user_for_token(token)
                if not is_event_id(last_event_id):
                    last_event_id = events.newest(get_db(), user["id"])
                return user, claims, last_event_id
            except APIError as error:
                raise Unauthorized(error.code, error.detail) from None
            except DatabaseError:
                self.app.logger.exception("realtime: checking a token failed")
                raise Unauthorized("database_unavailable", "The database is unavailable; try again.") from None

    def bind(self, sid, user, claims, last_event_id):
        """The socket now belongs to the token's session; catch it up, then let live events flow."""
        expires_at = claims["exp"] + self.app.config["JWT_LEEWAY"]
        with self.lock:
            socket = self.sockets.get(sid)
            if socket is None:
                return
            if socket.user_id is None:
                self.pending[socket.address] -= 1
                self.by_user[user["id"]].add(sid)
            socket.user_id, socket.session_id, socket.expires_at = user["id"], user["session_id"], expires_at
            self.schedule(expires_at, sid, "token_expired")
            if not socket.live:
                self.catch_up(sid, socket, last_event_id)
                socket.live = True

    def catch_up(self, sid, socket, last_event_id):
        """Send what a reconnecting client missed, in order, before any live event (lock held)."""
        with self.app.app_context():
            rows, oldest, newest = events.missed(get_db(), socket.user_id, last_event_id, self.replay_seconds)
        if oldest > last_event_id + 1 and newest > last_event_id:
            self.server.emit("replay_incomplete", {"oldest_event_id": oldest}, to=sid)
        else:
            for row in rows:
                self.server.emit(row["name"], {**json.loads(row["data"]), "event_id": row["event_id"]}, to=sid)
        socket.last_event_id = max(newest, last_event_id)

    @property
    def replay_seconds(self):
        return self.app.config["REALTIME_REPLAY_SECONDS"]

    def on_disconnect(self, sid, *reason):
        self.forget(sid)

    def forget(self, sid):
        with self.lock:
            socket = self.sockets.pop(sid, None)
            if socket is None:
                return
            if socket.user_id is None:
                self.pending[socket.address] -= 1
                if not self.pending[socket.address]:
                    del self.pending[socket.address]
            else:
                self.by_user[socket.user_id].discard(sid)
                if not self.by_user[socket.user_id]:
                    del self.by_user[socket.user_id]

    def end(self, sid, code):
        """session_ended, then a Socket.IO disconnect (the client will not reconnect by itself)."""
        self.server.emit("session_ended", {"code": code}, to=sid)
        self.server.disconnect(sid)

    # Deadlines: the 15 s to authenticate, and each token's exp

    def schedule(self, when, sid, reason):
        with self.lock:
            heapq.heappush(self.deadlines, (when, next(self.order), sid, reason))
        self.deadline_added.set()

    def run_deadlines(self):
        while True:
            due, timeout = [], None
            with self.lock:
                now = time.time()
                while self.deadlines and self.deadlines[0][0] <= now:
                    due.append(heapq.heappop(self.deadlines))
                if self.deadlines:
                    timeout = self.deadlines[0][0] - now
            for when, _, sid, reason in due:
                self.expire(sid, reason, when)
            self.deadline_added.wait(timeout)
            self.deadline_added.clear()

    def expire(self, sid, reason, when):
        with self.lock:
            socket = self.sockets.get(sid)
            if socket is None:
                return
            if reason == "authentication_timeout" and socket.user_id is None:
                detail = f"No authenticate event within {AUTH_TIMEOUT_SECONDS} seconds."
                self.server.emit("unauthorized", {"message": detail, "code": reason}, to=sid)
                self.server.disconnect(sid)
            elif reason == "token_expired" and socket.expires_at == when:
                self.end(sid, reason)

    # Fan-out: every worker reads the outbox after each commit

    def start(self):
        """Start this worker's listener and deadline task, once, after the fork."""
        with self.lock:
            if self.started:
                return
            self.started = True
            database = self.app.config["DATABASE"]
            if postgres.is_url(database):
                listen, watcher = self.listen_notifications, fanout.Notifications(database, events.CHANNEL)
            else:
                # Watch first, then note where the outbox stands: no commit falls between.
                listen, watcher = self.listen_commits, fanout.CommitWatcher(database)
                with self.app.app_context():
                    self.seen_id = events.last_id(get_db())
        self.server.start_background_task(self.run_deadlines)
        self.server.start_background_task(listen, watcher)

    def listen_notifications(self, watcher):
        """PostgreSQL: deliver each NOTIFYed row; after (re)connecting, what may have been missed."""
        started, pruned_at = time.time(), 0
        while True:
            rows, reconnected = watcher.wait(PRUNE_EVERY_SECONDS)
            try:
                with self.app.app_context():
                    db = get_db()
                    if reconnected:
                        # Delivery skips what a socket has seen; an ended session ends once.
                        rows = list(events.since(db, int(started) - RECONNECT_OVERLAP_SECONDS)) + rows
                    self.deliver(rows)
                    if time.time() - pruned_at > PRUNE_EVERY_SECONDS:
                        pruned_at = time.time()
                        events.prune(db, self.replay_seconds)
                started = time.time()
            except Exception:  # the listener must outlive any one failure
                self.app.logger.exception("realtime: delivering the outbox failed")

    def listen_commits(self, watcher):
        """SQLite: after each commit on this host, deliver the rows not seen yet."""
        pruned_at, rechecks = 0, iter(())
        while True:
            if watcher.wait(next(rechecks, None)):
                rechecks = iter(RECHECK_DELAYS)
            try:
                with self.app.app_context():
                    db = get_db()
                    self.deliver(events.after(db, self.seen_id))
                    if time.time() - pruned_at > PRUNE_EVERY_SECONDS:
                        pruned_at = time.time()
                        events.prune(db, self.replay_seconds)
            except Exception:  # the listener must outlive any one failure
                self.app.logger.exception("realtime: delivering the outbox failed; retrying at the next commit")

    def deliver(self, rows):
        with self.lock:
            for row in rows:
                self.seen_id = max(self.seen_id, row["id"])
                data = json.loads(row["data"])
                for sid in list(self.by_user.get(row["user_id"], ())):
                    socket = self.sockets[sid]
                    if row["event_id"] is None:
                        if socket.session_id == data["session_id"]:
                            self.end(sid, data["code"])
                    elif socket.live and row["event_id"] > socket.last_event_id:
                        socket.last_event_id = row["event_id"]
                        self.server.emit(row["name"], {**data, "event_id": row["event_id"]}, to=sid)


def is_event_id(value):
    return type(value) is int and value >= 0


def init_app(app):
    """Serve Socket.IO at /socket.io/ beside the app, in the same WSGI process."""
    realtime = Realtime(app)
    app.extensions["jwt_server.realtime"] = realtime
    app.wsgi_app = socketio.WSGIApp(realtime.server, app.wsgi_app, socketio_path="socket.io")
