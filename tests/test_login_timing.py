"""A failed login takes the same time whatever failed: timing tells no one which usernames exist.

At a realistic bcrypt cost, so that a missing comparison would show: an
unknown user, or a password bcrypt cannot take, is checked against the dummy
hash, which costs what the user's own hash costs; a user whose hash is of a
lower cost (imported from Koa, or from before BCRYPT_ROUNDS was raised) is
topped up to the configured cost. A password that NFKC normalization changes
is checked twice (normalized, then as typed), for known and unknown users alike.
"""
import statistics
import time
import unicodedata
from contextlib import closing

import bcrypt
import pytest

from tests.helpers import PASSWORD, open_database, register

ROUNDS = 10
TRIES = 15
BAND = 1.35  # each median within this factor of the wrong-password median

LOWER_COST = ROUNDS - 3  # an eighth of the work, were it not topped up
NFD_WRONG = unicodedata.normalize("NFD", "wrong passwörd")

FAILED_LOGINS = {
    "wrong password": ("travis", "wrong password"),
    "unknown user": ("nobody-by-this-name", "wrong password"),
    "password over 72 bytes": ("travis", PASSWORD + "x" * 80),
    "password with a NUL byte": ("travis", PASSWORD + "\0"),
    "wrong password, hash of a lower cost": ("koa-user", "wrong password"),
    "wrong password that NFKC changes": ("travis", NFD_WRONG),
    "unknown user, password that NFKC changes": ("nobody-by-this-name", NFD_WRONG),
}
# What each kind is measured against; the rest, against a wrong password. A
# password that NFKC changes takes two checks: the user's existence must not
# change that.
REFERENCES = {"unknown user, password that NFKC changes": "wrong password that NFKC changes"}
REFERENCE_KINDS = {"wrong password", *REFERENCES.values()}


@pytest.mark.slow
def test_unknown_user_and_wrong_password_take_the_same_time(make_app):
    # LOGIN_MAX_FAILURES: every try must reach bcrypt, none be throttled
    app = make_app(BCRYPT_ROUNDS=ROUNDS, LOGIN_MAX_FAILURES=1000)
    client = app.test_client()
    register(client)
    koa_user = register(client, "koa-user")
    with closing(open_database(app.config["DATABASE"])) as database:
        lower_cost_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(LOWER_COST)).decode()
        database.execute("UPDATE users SET password_hash = ? WHERE id = ?", (lower_cost_hash, koa_user["id"]))
        database.commit()
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
    assert medians["wrong password"] > 0.005, f"bcrypt at cost {ROUNDS} cannot take that little: no comparison ran"
    for kind, median in medians.items():
        if kind in REFERENCE_KINDS:
            continue
        reference_kind = REFERENCES.get(kind, "wrong password")
        reference = medians[reference_kind]
        assert reference / BAND <= median <= reference * BAND, (
            f"{kind}: median {median * 1000:.1f} ms against {reference * 1000:.1f} ms for {reference_kind}"
        )
