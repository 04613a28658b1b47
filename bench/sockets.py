"""make bench, realtime: 1,000 authenticated sockets on one service, what they cost, how fast events fan out.

In one run, on one `gunicorn -c gunicorn.conf.py wsgi:app`:
1. `GET /my-pets` with wrk, before any socket (the baseline);
2. a Node client (bench/sockets/load.mjs, socket.io-client as browser apps
   use it) opens the sockets, spread over a few users, and creates pets one
   by one: the time from just before each HTTP write to the event's arrival
   on every socket of the pet's owner is the fan-out latency;
3. the workers' resident memory with the sockets open, against step 1's;
4. `GET /my-pets` again with every socket still open: the ratio to step 1.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness

LOAD_CLIENT = Path(__file__).with_name("sockets") / "load.mjs"
PASSWORD = "bench password, not a secret"
FULL = {"sockets": 1000, "users": 50, "writes": 200, "seconds": 10}
SMOKE = {"sockets": 40, "users": 4, "writes": 10, "seconds": 2}
TARGETS = {"p99_ms": 100, "with_sockets": 0.8}


def users(server, count):
    tokens = []
    for number in range(count):
        body = {"username": f"socket{number}", "password": PASSWORD}
        harness.call(server.url + "/users", body)
        status, answer = harness.call(server.url + "/auth", body)
        if status != 200:
            raise harness.HarnessError(f"log-in answered {status}: {answer}")
        tokens.append(answer["access_token"])
    for name in ("Bunny", "Bugs"):
        harness.call(server.url + "/pets", {"name": name}, token=tokens[0])
    return tokens


def hot_path(server, token, seconds):
    return harness.wrk(server.url + "/my-pets", connections=32, seconds=seconds, token=token)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few sockets, seconds each (CI)")
    plan = SMOKE if parser.parse_args().smoke else FULL
    harness.require_wrk()
    with tempfile.TemporaryDirectory(prefix="jwt-bench-sockets-") as tmp:
        server = harness.Server(
            "service", ["wsgi:app"], Path(tmp),
            DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite", JWT_SECRET="bench-" + "x" * 40, BCRYPT_ROUNDS="4",
        )
        try:
            server.wait_ready("/health")
            tokens = users(server, plan["users"])
            hot_path(server, tokens[0], 2)  # warm-up
            before = hot_path(server, tokens[0], plan["seconds"])
            rss_before = sum(server.worker_rss_mb())
            client = subprocess.Popen(
                ["node", str(LOAD_CLIENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            request = {"url": server.url, "users": [{"token": token} for token in tokens],
                       "sockets": plan["sockets"], "writes": plan["writes"]}
            client.stdin.write(json.dumps(request) + "\n")
            client.stdin.flush()
            fanout = json.loads(client.stdout.readline())
            time.sleep(1)
            rss_after = sum(server.worker_rss_mb())
            during = hot_path(server, tokens[0], plan["seconds"])
            client.stdin.write("close\n")
            client.stdin.close()
            client.wait(timeout=30)
        finally:
            server.stop()
    print_report(plan, fanout, before, during, rss_before, rss_after)


def print_report(plan, fanout, before, during, rss_before, rss_after):
    connected = fanout["connected"]
    per_socket_kib = (rss_after - rss_before) * 1024 / connected if connected else float("nan")
    ratio = during["rps"] / before["rps"]
    rows = [
        ("sockets connected", f"{connected} of {plan['sockets']}", "", ""),
        ("events delivered", f"{fanout['deliveries']} of {fanout['expectedDeliveries']}", "all", ""),
        ("fan-out p50 / p99", f"{fanout['p50']:.1f} / {fanout['p99']:.1f} ms", f"p99 < {TARGETS['p99_ms']} ms",
         "yes" if fanout["p99"] is not None and fanout["p99"] < TARGETS["p99_ms"] else "no"),
        ("resident memory per socket", f"{per_socket_kib:.0f} KiB", "", ""),
        ("GET /my-pets without sockets", f"{before['rps']:.0f} req/s (p99 {before['p99']:.1f} ms)", "", ""),
        ("GET /my-pets with the sockets", f"{during['rps']:.0f} req/s (p99 {during['p99']:.1f} ms)", "", ""),
        ("with / without", f"{ratio:.2f}", f">= {TARGETS['with_sockets']}",
         "yes" if ratio >= TARGETS["with_sockets"] else "no"),
    ]
    print("\n| realtime | result | target | met |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if plan is SMOKE:
        print("(smoke run: a few sockets for seconds; targets not judged)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
