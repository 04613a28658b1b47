"""A failed login takes the same time whatever failed: timing tells no one which usernames exist.

At a realistic bcrypt cost, so that a missing comparison would show: an
unknown user, or a password bcrypt cannot take, is checked against the dummy
hash, which costs what the user's own hash costs.
"""
import statistics
import time

import pytest

from tests.helpers import PASSWORD, register

ROUNDS = 10
TRIES = 15
BAND = 1.35  # each median within this factor of the wrong-password median

FAILED_LOGINS = {
    "wrong password": ("travis", "wrong password"),
    "unknown user": ("nobody-by-this-name", "wrong password"),
    "password over 72 bytes": ("travis", PASSWORD + "x" * 80),
    "password with a NUL byte": ("travis", PASSWORD + "\0"),
}


@pytest.mark.slow
def test_unknown_user_and_wrong_password_take_the_same_time(make_app):
    # LOGIN_MAX_FAILURES: every try must reach bcrypt, none be throttled
    app = make_app(BCRYPT_ROUNDS=ROUNDS, LOGIN_MAX_FAILURES=1000)
    client = app.test_client()
    register(client)
    durations = {kind: [] for kind in FAILED_LOGINS}
    bodies = set()

    kinds = list(FAILED_LOGINS)
    for attempt in range(TRIES + 1):
        # Interleaved, in a rotating order, so that drift hits every kind alike.
        for kind in kinds[attempt % len(kinds):] + kinds[: attempt % len(kinds)]:
            username, password = FAILED_LOGINS[kind]
            started = time.perf_counter()
            response = client.post("/auth", json={"username": username, "password": password})
            elapsed = time.perf_counter() - started
            assert response.status_code == 401, response.get_data(as_text=True)
            bodies.add(response.get_data())
            if attempt:  # the first round warms up
                durations[kind].append(elapsed)

    assert len(bodies) == 1, "every failure must answer byte for byte the same body"
    medians = {kind: statistics.median(times) for kind, times in durations.items()}
    reference = medians["wrong password"]
    assert reference > 0.005, f"bcrypt at cost {ROUNDS} cannot take {reference:.4f} s: no comparison ran"
    for kind, median in medians.items():
        assert reference / BAND <= median <= reference * BAND, (
            f"{kind}: median {median * 1000:.1f} ms against {reference * 1000:.1f} ms for a wrong password"
        )
