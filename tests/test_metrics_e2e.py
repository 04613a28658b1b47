"""End to end: GET /metrics from the real gunicorn adds up every worker's counts.

Each request is a new connection, so the kernel hands them to whichever
worker accepts first; the access log's worker=<pid> says which one did.
Every wait is bounded.
"""
import os
import re
import signal
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import get_text, register_and_login

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 30
WORKERS = 3


def scrape(server):
    status, headers, text = get_text(server.base_url, "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def unauthenticated_my_pets(samples):
    return samples.get(("jwt_server_requests_total", (("method", "GET"), ("route", "/my-pets"), ("status", "401"))), 0)


def workers_that_served(server, path):
    log = server.access_log()
    return set(re.findall(rf'"GET {re.escape(path)} HTTP/1\.1" .* worker=<?(\d+)>?', log))


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {WAIT_SECONDS} s"
        time.sleep(0.05)


def test_e2e_metrics_add_up_every_worker(start_gunicorn):
    server = start_gunicorn(workers=WORKERS)
    sent = 0
    # Until the access log shows two workers at least have served some (bounded).
    while sent < 20 or len(workers_that_served(server, "/my-pets")) < 2:
        assert sent < 1000, "every request went to one worker"
        assert server.call("GET", "/my-pets").status == 401
        sent += 1

    # Whichever worker answers the scrape, it reports every worker's requests.
    totals = [unauthenticated_my_pets(scrape(server)) for _ in range(2 * WORKERS)]
    assert totals == [sent] * (2 * WORKERS)

    register_and_login(server, "travis")
    for _ in range(2):
        assert server.call("POST", "/auth", {"username": "travis", "password": "wrong password"}).status == 401
    samples = scrape(server)
    assert samples[("jwt_server_logins_total", (("outcome", "succeeded"),))] == 1
    assert samples[("jwt_server_logins_total", (("outcome", "failed"),))] == 2
    assert samples[("jwt_server_live_sessions", ())] == 1

    # A worker that ends (here, killed and replaced) keeps its counts in the totals.
    stopped = workers_that_served(server, "/my-pets").pop()
    booted = server.stderr().count("Booting worker")
    os.kill(int(stopped), signal.SIGTERM)
    wait_for(lambda: server.stderr().count("Booting worker") > booted, "a new worker")
    assert unauthenticated_my_pets(scrape(server)) == sent


def test_e2e_gunicorn_removes_its_metrics_directory_when_it_stops(start_gunicorn):
    server = start_gunicorn(workers=2)
    master = server.process.pid
    directories = list(server.database.parent.glob(f"jwt-server-metrics-{master}-*"))  # TMPDIR
    assert len(directories) == 1
    assert any(directories[0].iterdir())  # the workers' files

    assert server.stop() == 0
    assert not directories[0].exists()
