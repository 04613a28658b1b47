"""GET /metrics through the Flask test client: what is counted, and who may read it.

The counters live in the process, as prometheus-client keeps them, so every
test reads them before and after and compares the difference.
"""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jwt_server.config import load_config
from tests.helpers import PASSWORD, assert_problem, log_in, register


def scrape(client, **request):
    """``{(sample name, sorted labels): value}`` from one GET /metrics."""
    response = client.get("/metrics", **request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def requests_counted(samples, route, method, status):
    key = ("jwt_server_requests_total", (("method", method), ("route", route), ("status", str(status))))
    return samples.get(key, 0)


def logins(samples, outcome):
    return samples[("jwt_server_logins_total", (("outcome", outcome),))]


def test_requests_are_counted_by_route_template_method_and_status(client, auth_headers):
    before = scrape(client)
    client.get("/pets/1", headers=auth_headers)
    client.get("/pets/2", headers=auth_headers)
    client.get("/pets/3")
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    after = scrape(client)

    def counted(route, method, status):
        return requests_counted(after, route, method, status) - requests_counted(before, route, method, status)

    # One series per template, not per id; unknown paths share one series.
    assert counted("/pets/<int:pet_id>", "GET", 404) == 2
    assert counted("/pets/<int:pet_id>", "GET", 401) == 1
    assert counted("unrouted", "GET", 404) == 2
    assert not [key for key in after if "/no/such" in str(key)]


def test_request_durations_are_a_histogram_per_route(client):
    key = ("jwt_server_request_duration_seconds_count", (("method", "GET"), ("route", "/health")))
    before = scrape(client).get(key, 0)
    for _ in range(3):
        client.get("/health")
    after = scrape(client)

    assert after[key] - before == 3
    assert after[("jwt_server_request_duration_seconds_sum", key[1])] > 0
    infinity_bucket = ("jwt_server_request_duration_seconds_bucket", (("le", "+Inf"), *key[1]))
    assert after[infinity_bucket] == after[key]


def test_logins_are_counted_by_outcome(make_app):
    client = make_app(LOGIN_MAX_FAILURES=2).test_client()
    register(client)
    before = scrape(client)
    log_in(client)
    for _ in range(3):  # two failures lock the pair; the third attempt is throttled
        client.post("/auth", json={"username": "travis", "password": "wrong password"})
    after = scrape(client)

    assert logins(after, "succeeded") - logins(before, "succeeded") == 1
    assert logins(after, "failed") - logins(before, "failed") == 2
    assert logins(after, "throttled") - logins(before, "throttled") == 1


def test_refresh_token_reuse_is_counted(client):
    register(client)
    tokens = client.post("/auth", json={"username": "travis", "password": PASSWORD}).get_json()
    key = ("jwt_server_refresh_token_reuses_total", ())
    before = scrape(client)[key]
    assert client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    assert scrape(client)[key] == before

    reused = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(reused, 401, "refresh_token_reused")
    assert scrape(client)[key] - before == 1


def test_live_sessions_are_read_from_the_database(client):
    key = ("jwt_server_live_sessions", ())
    assert scrape(client)[key] == 0
    register(client)
    first = log_in(client)
    log_in(client)
    assert scrape(client)[key] == 2
    client.post("/auth/logout", headers=first.headers)
    assert scrape(client)[key] == 1


def test_metrics_are_a_404_to_a_client_outside_metrics_allow(client):
    hidden = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    unknown = client.get("/no-such-page", environ_base={"REMOTE_ADDR": "203.0.113.5"})

    assert_problem(hidden, 404, "not_found")
    assert hidden.get_data() == unknown.get_data()


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_metrics_are_open_to_this_host_by_default(client, address):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_metrics_allow_takes_networks(make_app):
    allowed = load_config({"METRICS_ALLOW": "10.0.0.0/8, 192.0.2.7"})["METRICS_ALLOW"]
    client = make_app(METRICS_ALLOW=allowed).test_client()

    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    assert_problem(client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.8"}), 404)
    assert_problem(client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}), 404)


def test_behind_a_proxy_the_forwarded_client_address_decides(make_app):
    client = make_app(TRUSTED_PROXIES=1).test_client()

    # The proxy itself is on 127.0.0.1; what counts is the client it forwards for.
    outside = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
    assert_problem(outside, 404, "not_found")
    spoofed = client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.5"})
    assert_problem(spoofed, 404, "not_found")
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
