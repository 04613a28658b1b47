"""gunicorn settings for jwt-server: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The environment is validated here, in the master, before any worker starts:
a bad value stops gunicorn with one line naming the variable instead of a
crowd of workers failing one after another.
"""
# The gevent worker (worker_class below) patches the standard library when it
# starts; what this file imports must be patched from the start too, or the
# workers warn that ssl was imported before patching (gunicorn's advice).
from gevent import monkey

monkey.patch_all()

import atexit  # noqa: E402
import gc  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402


def _remove_metrics_directory(path, master_pid):
    # Workers inherit this exit handler; only the master's exit removes the files.
    if os.getpid() == master_pid:
        shutil.rmtree(path, ignore_errors=True)


# GET /metrics adds up the counts of every worker (prometheus-client's
# multiprocess mode): each worker keeps its own in files in this directory,
# made afresh for this gunicorn, kept across graceful reloads and removed
# when it exits. It must be set before anything imports prometheus-client,
# so before jwt_server.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"jwt-server-metrics-{os.getpid()}-")
    atexit.register(_remove_metrics_directory, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())

from jwt_server.config import load_config, read, read_or_create_secret  # noqa: E402
from jwt_server.db import prepare_before_fork  # noqa: E402
from jwt_server.keys import load_keys  # noqa: E402

_settings = load_config(os.environ)
if not _settings["JWT_SECRET"]:
    _settings["JWT_SECRET"] = read_or_create_secret()

# The database is created (mode 0600) and migrated here, in the master, at
# start and on reload, before workers fork: a worker only opens the file, so
# one respawned after the file was deleted answers 503 instead of starting
# an empty database in its place. A database that cannot be brought up to
# date stops gunicorn here, with one line, rather than every worker in turn.
prepare_before_fork(_settings["DATABASE"])
# Every worker signs with the keys stored in the database: open them once here
# too, so that a JWT_SECRET that cannot stops gunicorn with one line (a worker
# that fails is only started again), and the first key is made once.
load_keys(_settings)

# Loopback (or a unix socket) only: nginx is the one client, and the app
# believes its X-Forwarded-For (TRUSTED_PROXIES), so no one else may connect.
bind = [read(os.environ, "BIND") or f"127.0.0.1:{read(os.environ, 'PORT')}"]

# gevent: one greenlet per connection, so a worker serves its requests and
# holds its Socket.IO sockets (realtime.py) without a thread for each; bcrypt
# runs in gevent's thread pool (security.off_the_event_loop), so logins run in
# parallel and never stall the worker. jwt_server.worker's GeventWorker makes
# gunicorn's own errors (414, 431, a malformed request or chunked body) the
# app's problem documents and holds a chunked body to the app's 64 KiB limit.
# (jwt_server.worker.ThreadWorker is the same on gthread, with `threads`.)
worker_class = "jwt_server.worker.GeventWorker"
workers = read(os.environ, "WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1
worker_connections = 1000
threads = 4
# A worker whose main loop is silent this long is killed and replaced. With
# gthread a slow request does not trigger it; nginx answers 504 for one after
# its proxy_read_timeout, also 30 s.
timeout = 30
# How long a stopping worker (on SIGHUP or SIGTERM) may finish its requests;
# systemd's TimeoutStopSec in deploy/jwt-server.service is longer.
graceful_timeout = 30
# For clients that talk to gunicorn directly; nginx opens one connection per request.
keepalive = 5

# Graceful reload: SIGHUP (`systemctl reload jwt-server`) re-reads this file,
# starts workers on the new code, then lets the old ones finish what they are
# serving while the socket stays open, so no request is refused or dropped.
# That is why preload_app stays off. Workers that cannot boot stop gunicorn,
# so run `make test` on new code before reloading onto it.
preload_app = False
# Signals (from systemd) are the one way to manage the server: no gunicornc
# control socket in the service user's home, shared by every gunicorn there.
control_socket_disable = True

# Believe X-Forwarded-Proto only from nginx on this host, and no other scheme
# header: nginx sets this one and overwrites whatever the client sent.
forwarded_allow_ips = read(os.environ, "FORWARDED_ALLOW_IPS")
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# One line per request on stdout (the journal, under systemd). The address is
# the client's as the app sees it: through TRUSTED_PROXIES proxies, the last
# X-Forwarded-For entries. request_id is the response's X-Request-ID, the same
# as in nginx's log line; worker is the pid of the worker that answered.
accesslog = "-"
access_log_format = (
    '%(h)s - %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms '
    "request_id=%({x-request-id}o)s worker=%(p)s"
)


def child_exit(server, worker):
    """A worker that ended keeps its counts in the totals, and drops out of any live gauge."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_fork(server, worker):
    """Freeze what the master has built, so that no worker's collector ever walks or copies it.

    A worker shares the master's memory until it writes to a page; CPython's
    cyclic collector writes into every object it examines, so each full
    collection in a worker copied the pages of every module this file
    imported, and paused the worker while it walked them (tens of ms, now
    and then, on every connection the worker serves). Frozen, they are never
    examined (Python's gc.freeze documentation, for pre-fork servers).
    """
    _freeze_collected_objects()


def post_worker_init(worker):
    """The same for what the worker built once at start: the app, its routes, its modules."""
    _freeze_collected_objects()


# PyPy's collector works otherwise and has no gc.freeze.
_freeze_collected_objects = getattr(gc, "freeze", lambda: None)
