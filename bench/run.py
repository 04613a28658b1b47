"""make bench: the service against the Koa server it replaces, a bare-Flask ceiling, bcrypt, its data size.

Shared machines are noisy: absolute figures drift from run to run, while
ratios of figures measured side by side in one run hold. So everything is
measured in one run, on servers started here from a temporary directory:
the pairs that are compared alternate round by round, and the best round of
each counts. Every server gets ``warmup`` seconds of load first: the Koa
server's JIT needs about 10 s to reach its speed. ``--stack`` adds the
service under other gunicorn worker models, and the service and bare Flask on
PyPy when .venv-bench-pypy exists (at least 30 s of warm-up there, for PyPy's
JIT), each against the Koa server of the same run.
``--smoke`` runs the same steps for about 2 s each on tiny data, so that CI
notices when the bench itself breaks; it never judges the targets.
"""
import argparse
import os
import runpy
import secrets
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from bench import harness, postgres, report
from bench.bare import PETS


@dataclass(frozen=True)
class Plan:
    seconds: int  # per wrk measurement
    login_seconds: int  # longer: a login takes 1/4 s, and the ones cut off at the end are lost
    warmup: int  # seconds of load on each server before any measurement, not counted
    rounds: int  # how many times the compared runs alternate; the best round of each counts
    few_pets: int
    many_pets: int
    bcrypt_checks: int  # timed before the logins, and as many after
    smoke: bool = False


FULL = Plan(seconds=10, login_seconds=15, warmup=10, rounds=2, few_pets=1_000, many_pets=1_000_000, bcrypt_checks=4)
SMOKE = Plan(seconds=2, login_seconds=5, warmup=1, rounds=1, few_pets=150, many_pets=1_500, bcrypt_checks=1, smoke=True)
CONNECTIONS = 32
LIST_PATH = "/pets?limit=100"
LIST_LIMIT = 100
PASSWORD = "bench password, not a secret"
PYPY_WARMUP = 30
# PyPy sizes its GC nursery from the CPU cache size /proc/cpuinfo reports; a
# KVM guest here reports 480 MiB of cache, and each worker then held ~400 MiB
# (720 MiB with two workers). 4 MB: about 150 MiB, and twice the requests/s.
PYPY_ENVIRONMENT = {"PYPY_GC_NURSERY": os.environ.get("PYPY_GC_NURSERY", "4MB")}


@dataclass
class Setup:
    """The servers and users one run measures."""

    service: harness.Server  # on a database where the lister has few pets
    big_service: harness.Server  # on a copy where the lister has many
    bare: harness.Server
    koa: harness.Server  # the server jwt-server replaces, on its own database with the original schema
    owner_token: str  # the owner's pets are bare.PETS
    koa_token: str  # the same owner's, from the Koa server
    lister_token: str
    stored_hash: bytes  # the owner's bcrypt hash, as POST /users stored it
    generate_seconds: float


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about 2 s per measurement, tiny data (CI)")
    parser.add_argument("--stack", action="store_true", help="also other gunicorn worker models, and PyPy")
    arguments = parser.parse_args()
    plan = SMOKE if arguments.smoke else FULL
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupt)
    started = time.monotonic()
    try:
        harness.require_wrk()
        with tempfile.TemporaryDirectory(prefix="jwt-bench-") as tmp:
            servers = []
            try:
                figures = measure(plan, Path(tmp), servers)
                if arguments.stack:
                    figures["stack"] = measure_stack(plan, Path(tmp), servers, figures)
            finally:
                stop_all(servers)
    except harness.HarnessError as error:
        sys.exit(f"bench: {error}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; servers stopped, temporary files removed")
    figures.pop("setup", None)
    figures["elapsed"] = time.monotonic() - started
    report.print_figures(plan, figures, LIST_PATH)
    postgres.print_figures(plan, figures)


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_all(servers):
    """Stop every server, undisturbed by a second Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for server in servers:
            server.stop()
    finally:
        signal.signal(signal.SIGINT, previous)


def measure(plan, tmp, servers):
    figures = {"load_average": os.getloadavg()[0], "cores": len(os.sched_getaffinity(0))}
    figures["gunicorn"] = gunicorn_settings(tmp)
    setup = prepare(plan, tmp, servers)
    figures["generate_seconds"] = setup.generate_seconds
    my_pets = {"token": setup.owner_token, "connections": CONNECTIONS}
    koa_pets = {"token": setup.koa_token, "connections": CONNECTIONS}
    pet_list = {"token": setup.lister_token, "connections": 1}
    for url, options in (
        (setup.koa.url + "/my-pets", koa_pets),
        (setup.bare.url + "/my-pets", my_pets),
        (setup.service.url + "/my-pets", my_pets),
        (setup.service.url + LIST_PATH, pet_list),
        (setup.big_service.url + LIST_PATH, pet_list),
    ):
        harness.wrk(url, seconds=plan.warmup, **options)
    figures["koa"], figures["ceiling"], figures["my_pets"] = alternate(
        plan.rounds,
        lambda: harness.wrk(setup.koa.url + "/my-pets", seconds=plan.seconds, **koa_pets),
        lambda: harness.wrk(setup.bare.url + "/my-pets", seconds=plan.seconds, **my_pets),
        lambda: harness.wrk(setup.service.url + "/my-pets", seconds=plan.seconds, **my_pets),
    )
    figures.update(measure_logins(plan, setup, figures))
    # Those logins opened more sessions than a user may hold: the oldest, the
    # owner's token among them, have ended.
    setup.owner_token = log_in(setup.service.url, "bench_owner")
    figures["few"], figures["many"] = alternate(
        plan.rounds,
        lambda: harness.wrk(setup.service.url + LIST_PATH, seconds=plan.seconds, **pet_list),
        lambda: harness.wrk(setup.big_service.url + LIST_PATH, seconds=plan.seconds, **pet_list),
    )
    figures.update(postgres.measure(plan, tmp, servers, setup, alternate, register_and_log_in, CONNECTIONS))
    figures["service_rss"] = setup.service.worker_rss_mb()
    figures["bare_rss"] = setup.bare.worker_rss_mb()
    figures["koa_rss"] = setup.koa.worker_rss_mb()
    figures["service_pss"] = setup.service.worker_pss_mb()
    figures["bare_pss"] = setup.bare.worker_pss_mb()
    figures["koa_pss"] = setup.koa.worker_pss_mb()
    figures["setup"] = setup  # for measure_stack
    if len(figures["service_rss"]) != figures["gunicorn"]["workers"]:
        raise harness.HarnessError(f"found {len(figures['service_rss'])} service workers, not {figures['gunicorn']}")
    return figures


def gunicorn_settings(tmp):
    """Set the environment every server gets, and read what gunicorn.conf.py makes of it."""
    for name in harness.SERVER_VARIABLES:
        os.environ.pop(name, None)
    os.environ["JWT_SECRET"] = secrets.token_hex(32)
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'unused.sqlite'}"
    settings = runpy.run_path(str(harness.PROJECT_ROOT / "gunicorn.conf.py"))
    return {key: settings[key] for key in ("worker_class", "workers", "threads", "keepalive", "access_log_format")}


def prepare(plan, tmp, servers):
    """Users through the API; pets straight into SQLite; a copy of the database with many more."""
    base, big = tmp / "base.sqlite", tmp / "big.sqlite"
    service = start(servers, "service", "wsgi:app", tmp, base)
    service.wait_ready("/health")
    owner_id, owner_token = register_and_log_in(service.url, "bench_owner")
    lister_id, lister_token = register_and_log_in(service.url, "bench_lister")
    started = time.monotonic()
    harness.add_pets(base, [(pet["id"], owner_id, pet["name"], pet["species"]) for pet in PETS])
    harness.add_pets(base, harness.generated_pets(lister_id, plan.few_pets))
    harness.copy_database(base, big)
    harness.add_pets(big, harness.generated_pets(lister_id, plan.many_pets - plan.few_pets, plan.few_pets))
    generate_seconds = time.monotonic() - started
    big_service = start(servers, "service-big", "wsgi:app", tmp, big)
    bare = start(servers, "bare", "bench.bare:app", tmp, base)
    big_service.wait_ready("/health")
    bare.wait_ready("/my-pets")
    expect_list(bare.url + "/my-pets", owner_token, len(PETS))
    expect_list(service.url + "/my-pets", owner_token, len(PETS))
    expect_list(service.url + LIST_PATH, lister_token, LIST_LIMIT)
    expect_list(big_service.url + LIST_PATH, lister_token, LIST_LIMIT)
    stored_hash = harness.password_hash(base, owner_id).encode()
    koa, koa_token = start_koa(servers, tmp, stored_hash)
    expect_list(koa.url + "/my-pets", koa_token, len(PETS))
    return Setup(service, big_service, bare, koa, owner_token, koa_token, lister_token, stored_hash, generate_seconds)


def start_koa(servers, tmp, stored_hash):
    """The Koa server on the original schema, its user holding the service owner's hash and pets."""
    database = tmp / "koa.sqlite"
    harness.koa_database(database, "bench_owner", stored_hash.decode(), PETS)
    koa = harness.Server(
        "koa", ["node", "server.js"], tmp, koa=True, DATABASE=str(database), JWT_SECRET=os.environ["JWT_SECRET"]
    )
    servers.append(koa)
    koa.wait_ready("/my-pets", status=401)
    status, tokens = harness.call(koa.url + "/auth", {"username": "bench_owner", "password": PASSWORD})
    if status != 200:
        raise harness.HarnessError(f"Koa's POST /auth answered {status}: {tokens}")
    return koa, tokens["access_token"]


def start(servers, name, app, tmp, database, *settings, **server_options):
    server = harness.Server(name, [*settings, app], tmp, DATABASE_URL=f"sqlite:///{database}", **server_options)
    servers.append(server)
    return server


def register_and_log_in(url, username):
    """A new user's id and access token, through the API as any client gets them."""
    status, user = harness.call(url + "/users", {"username": username, "password": PASSWORD})
    if status != 201:
        raise harness.HarnessError(f"POST /users answered {status}: {user}")
    return user["id"], log_in(url, username)


def log_in(url, username):
    status, tokens = harness.call(url + "/auth", {"username": username, "password": PASSWORD})
    if status != 200:
        raise harness.HarnessError(f"POST /auth answered {status}: {tokens}")
    return tokens["access_token"]


def expect_list(url, token, length):
    status, body = harness.call(url, token=token)
    if status != 200 or not isinstance(body, list) or len(body) != length:
        raise harness.HarnessError(f"GET {url} answered {status} with {str(body)[:200]}, not {length} pets")


def measure_logins(plan, setup, figures):
    """Logins/s, and the bcrypt check timed just before and after them, on the same machine."""
    gunicorn = figures["gunicorn"]
    at_once = min(figures["cores"], gunicorn["workers"] * gunicorn["threads"])
    checks = time_bcrypt(setup.stored_hash, plan.bcrypt_checks)
    logins = harness.wrk(
        setup.service.url + "/auth",
        connections=2 * at_once,  # enough to keep every core on bcrypt, few to lose at the end
        seconds=plan.login_seconds,
        body={"username": "bench_owner", "password": PASSWORD},
    )
    checks += time_bcrypt(setup.stored_hash, plan.bcrypt_checks)
    koa_logins = harness.wrk(
        setup.koa.url + "/auth",
        connections=2 * at_once,
        seconds=plan.login_seconds,
        body={"username": "bench_owner", "password": PASSWORD},
    )
    return {
        "logins": logins,
        "koa_logins": koa_logins,
        "at_once": at_once,
        "bcrypt_cost": int(setup.stored_hash.split(b"$")[2]),
        "bcrypt_checks": len(checks),
        "bcrypt_seconds": statistics.median(checks),
        "bcrypt_parallel": bcrypt_in_parallel(setup.stored_hash, at_once),
    }


def check_password(stored_hash):
    if not bcrypt.checkpw(PASSWORD.encode(), stored_hash):
        raise harness.HarnessError("the bench user's password does not match its stored hash")


def time_bcrypt(stored_hash, checks):
    """The seconds each of ``checks`` bcrypt checks of the stored hash takes, one at a time."""
    durations = []
    for _ in range(checks):
        started = time.perf_counter()
        check_password(stored_hash)
        durations.append(time.perf_counter() - started)
    return durations


def bcrypt_in_parallel(stored_hash, threads):
    """Checks/s with ``threads`` at once in one process: what this machine allows, no server."""
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(check_password, [stored_hash] * threads * 2))
        return threads * 2 / (time.perf_counter() - started)


def stack_options(gunicorn):
    """``(name, gunicorn settings beside gunicorn.conf.py's, app, gunicorn)`` to measure."""
    workers = str(gunicorn["workers"])
    # gunicorn.conf.py's worker is gevent's: --threads alone would leave it there.
    gthread = ["--worker-class", "jwt_server.worker.ThreadWorker"]
    options = [
        ("service, gthread 2 workers x 16 threads", [*gthread, "--workers", "2", "--threads", "16"], "wsgi:app"),
        ("service, gthread 3 x 8", [*gthread, "--workers", "3", "--threads", "8"], "wsgi:app"),
        (f"service, sync x {workers} (no keep-alive)", ["--worker-class", "sync"], "wsgi:app"),
        ("service, gevent x 2", ["--workers", "2"], "wsgi:app"),
        ("bare Flask, gevent x 2", ["--workers", "2"], "bench.bare:app"),
    ]
    options = [(*option, harness.GUNICORN) for option in options]
    if harness.PYPY_GUNICORN.exists():
        options += [
            (f"service on PyPy, gevent x {workers}", [], "wsgi:app", harness.PYPY_GUNICORN),
            ("service on PyPy, gevent x 2", ["--workers", "2"], "wsgi:app", harness.PYPY_GUNICORN),
            ("bare Flask on PyPy, gevent x 2", ["--workers", "2"], "bench.bare:app", harness.PYPY_GUNICORN),
        ]
    return options


def measure_stack(plan, tmp, servers, figures):
    """Each other way to serve, warmed up, then measured between two runs of the Koa server."""
    setup = figures.pop("setup")
    koa_pets = {"token": setup.koa_token, "connections": CONNECTIONS}
    my_pets = {"token": setup.owner_token, "connections": CONNECTIONS}
    rows = []
    for name, settings, app, gunicorn in stack_options(figures["gunicorn"]):
        print(f"bench: measuring {name}", file=sys.stderr)
        pypy = gunicorn == harness.PYPY_GUNICORN
        server = start(servers, f"stack-{len(rows)}", app, tmp, tmp / "base.sqlite", *settings, gunicorn=gunicorn,
                       **(PYPY_ENVIRONMENT if pypy else {}))
        # PyPy's JIT needs about 20 s of load before the service reaches its speed.
        warmup = max(plan.warmup, PYPY_WARMUP) if pypy and not plan.smoke else plan.warmup
        try:
            server.wait_ready("/my-pets", status=200 if app == "bench.bare:app" else 401)
            harness.wrk(server.url + "/my-pets", seconds=warmup, **my_pets)
            koa, measured = alternate(
                plan.rounds,
                lambda: harness.wrk(setup.koa.url + "/my-pets", seconds=plan.seconds, **koa_pets),
                lambda url=server.url: harness.wrk(url + "/my-pets", seconds=plan.seconds, **my_pets),
            )
            rows.append((name, measured, koa, server.worker_rss_mb(), server.worker_pss_mb()))
        except harness.HarnessError as error:  # one option failing leaves the others' figures
            print(f"bench: {name} not measured: {error}", file=sys.stderr)
        finally:
            server.stop()
            servers.remove(server)
    return rows


def alternate(rounds, *runs):
    """Each run in turn, ``rounds`` times over; the best result of each (most requests/s)."""
    results = [[] for _ in runs]
    for _ in range(rounds):
        for result, run in zip(results, runs):
            result.append(run())
    return [max(result, key=lambda figures: figures["rps"]) for result in results]


if __name__ == "__main__":
    main()
