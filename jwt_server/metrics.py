"""Prometheus metrics at GET /metrics, added up over every gunicorn worker.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus-client: each worker then keeps its counts in files of its own in
that directory, and a scrape, whichever worker answers it, reads them all
(prometheus-client's multiprocess mode). Without it (the test client,
``flask --app wsgi``) the counts are this process's own.
"""
import functools
import ipaddress
import os
import time

from flask import Blueprint, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import NotFound

from .db import get_db

bp = Blueprint("metrics", __name__)

# The *_created series exist only outside multiprocess mode: leave them out everywhere.
disable_created_metrics()

# registry=None: a scrape builds its registry afresh (see metrics below).
REQUESTS = Counter(
    "jwt_server_requests", "Requests answered, by route template, method and status.",
    ["route", "method", "status"], registry=None,
)
REQUEST_DURATION = Histogram(
    "jwt_server_request_duration_seconds", "Seconds from routing to the response, by route template and method.",
    ["route", "method"], registry=None,
)
LOGINS = Counter("jwt_server_logins", "POST /auth attempts by outcome.", ["outcome"], registry=None)
REFRESH_TOKEN_REUSES = Counter(
    "jwt_server_refresh_token_reuses",
    "Refresh tokens presented again after they were rotated; each revoked its session.", registry=None,
)
PROCESS_METRICS = (REQUESTS, REQUEST_DURATION, LOGINS, REFRESH_TOKEN_REUSES)

# Security events (audit.event) that a counter follows; each series exists from the start, at 0.
EVENT_COUNTERS = {
    "login_succeeded": LOGINS.labels("succeeded"),
    "login_failed": LOGINS.labels("failed"),
    "login_throttled": LOGINS.labels("throttled"),
    "refresh_token_reused": REFRESH_TOKEN_REUSES,
}
# Anything else a client sends as a method would be a new series each time.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_event(name):
    counter = EVENT_COUNTERS.get(name)
    if counter is not None:
        counter.inc()


def start_timer():
    g.metrics_started = time.perf_counter()


@functools.cache
def request_series(route, method, status):
    """The counter and histogram of one kind of request; labels() costs more than the count itself."""
    return REQUESTS.labels(route, method, status), REQUEST_DURATION.labels(route, method)


def count_request(response):
    rule, method = request.url_rule, request.method
    # The template, not the path: /pets/1 and /pets/2 are one series; unrouted paths are one too.
    route = rule.rule if rule is not None else "unrouted"
    method = method if method in METHODS else "other"
    requests, duration = request_series(route, method, response.status_code)
    requests.inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        duration.observe(time.perf_counter() - started)
    return response


class LiveSessions:
    """A gauge read from the database at scrape time, so that it is the same whatever worker answers."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        count = self.db.execute(
            "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?", (int(time.time()),)
        ).fetchone()[0]
        yield GaugeMetricFamily("jwt_server_live_sessions", "Sessions neither revoked nor expired.", value=count)


def client_allowed(address, allowed_networks):
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    client = getattr(client, "ipv4_mapped", None) or client
    return any(client in network for network in allowed_networks)


@bp.get("/metrics")
def metrics():
    # To anyone else the route does not exist: the same 404 as any unknown path.
    if not client_allowed(request.remote_addr, current_app.config["METRICS_ALLOW"]):
        raise NotFound()
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        MultiProcessCollector(registry)
    else:
        for metric in PROCESS_METRICS:
            registry.register(metric)
    registry.register(LiveSessions(get_db()))
    return generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST}


def init_app(app):
    """Time and count every request, errors included; add GET /metrics."""
    app.before_request(start_timer)
    app.after_request(count_request)
    app.register_blueprint(bp)
