"""What each JWT_ALGORITHM costs: signing and verifying a token, and the hot path.

    .venv/bin/python -m bench.keys            # under a minute
    .venv/bin/python -m bench.keys --smoke    # a second or two, to check the bench itself

In-process, one app per algorithm on a temporary database: microseconds to
sign a token, to verify one the server has not seen before (signature and
claims), and for a whole ``GET /my-pets`` through the Flask test client with
a token the worker has already verified, which is what a client sends on
every request. Times are this thread's CPU time, which other processes on a
shared machine do not inflate as they do the wall clock. The algorithms take
turns round by round, so that the ratios to HS256 compare figures measured
side by side; as with timeit, the best round counts.
"""
import argparse
import secrets
import tempfile
import time
from pathlib import Path

from jwt_server import create_app, security

ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")
PASSWORD = "bench password, not a secret"


class Subject:
    """An app signing with ``algorithm``, a user with a few pets, and a token of theirs."""

    def __init__(self, directory, algorithm):
        self.algorithm = algorithm
        self.app = create_app({
            "DATABASE": str(Path(directory) / f"{algorithm}.sqlite"),
            "JWT_SECRET": secrets.token_hex(32),
            "JWT_ALGORITHM": algorithm,
            "BCRYPT_ROUNDS": 4,
        })
        self.keys = self.app.extensions["jwt_server.keys"]
        self.client = self.app.test_client()
        self.client.post("/users", json={"username": "bench", "password": PASSWORD})
        token = self.client.post("/auth", json={"username": "bench", "password": PASSWORD}).get_json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        for name in ("Bunny", "Rex", "Tom"):
            self.client.post("/pets", json={"name": name}, headers=self.headers)
        claims = security.decode_access_token(token, self.app.config, self.keys)
        self.user, self.session_id = {"id": int(claims["sub"]), "is_admin": False}, int(claims["sid"])

    def sign(self, count):
        """Seconds per token signed, and the tokens."""
        started = time.thread_time()
        tokens = [security.issue_access_token(self.user, self.session_id, self.app.config, self.keys)
                  for _ in range(count)]
        return (time.thread_time() - started) / count, tokens

    def verify(self, tokens):
        """Seconds per token verified for the first time."""
        security.verified_claims.cache_clear()
        started = time.thread_time()
        for token in tokens:
            security.decode_access_token(token, self.app.config, self.keys)
        return (time.thread_time() - started) / len(tokens)

    def hot_path(self, count):
        """Seconds per GET /my-pets with a token already verified."""
        self.client.get("/my-pets", headers=self.headers)
        started = time.thread_time()
        for _ in range(count):
            response = self.client.get("/my-pets", headers=self.headers)
        assert response.status_code == 200, response.get_json()
        return (time.thread_time() - started) / count


def measure(rounds, tokens_per_round, requests_per_round):
    """``{algorithm: {"sign": µs, "verify": µs, "hot path": µs}}``, the best of the rounds."""
    with tempfile.TemporaryDirectory() as directory:
        subjects = [Subject(directory, algorithm) for algorithm in ALGORITHMS]
        samples = {subject.algorithm: {"sign": [], "verify": [], "hot path": []} for subject in subjects}
        for _ in range(rounds):
            for subject in subjects:
                sign_seconds, tokens = subject.sign(tokens_per_round)
                figures = samples[subject.algorithm]
                figures["sign"].append(sign_seconds)
                figures["verify"].append(subject.verify(tokens))
                figures["hot path"].append(subject.hot_path(requests_per_round))
    return {
        algorithm: {name: min(values) * 1e6 for name, values in figures.items()}
        for algorithm, figures in samples.items()
    }


def print_report(results):
    print(f"{'JWT_ALGORITHM':14}{'sign µs':>10}{'verify µs':>11}{'GET /my-pets µs':>17}{'hot path / HS256':>18}")
    base = results["HS256"]["hot path"]
    for algorithm, figures in results.items():
        print(
            f"{algorithm:14}{figures['sign']:>10.1f}{figures['verify']:>11.1f}"
            f"{figures['hot path']:>17.1f}{figures['hot path'] / base:>18.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a second or two, to check the bench itself")
    smoke = parser.parse_args().smoke
    print_report(measure(rounds=1 if smoke else 15, tokens_per_round=20 if smoke else 100,
                         requests_per_round=50 if smoke else 300))


if __name__ == "__main__":
    main()
