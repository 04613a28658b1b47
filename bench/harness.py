"""What the bench runs on: gunicorn servers in their own process groups, wrk, SQLite rows."""
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from jwt_server.config import ENVIRONMENT_VARIABLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
PYPY_GUNICORN = PROJECT_ROOT / ".venv-bench-pypy" / "bin" / "gunicorn"
WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
KOA_DIR = Path(__file__).with_name("koa")
START_TIMEOUT = 30
STOP_TIMEOUT = 10
SPECIES = ["dog", "cat", "rabbit", None]
# Settings the bench chooses itself: anything set in the caller's shell is dropped,
# so that gunicorn runs with the defaults of gunicorn.conf.py (workers, BCRYPT_ROUNDS...).
SERVER_VARIABLES = ENVIRONMENT_VARIABLES
WRK_MISSING = (
    "wrk is not installed. On Debian or Ubuntu, as root: apt-get update && apt-get install -y wrk"
)

# Requests to 127.0.0.1 go straight there, whatever *_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HarnessError(RuntimeError):
    """The bench itself cannot go on: a server did not start, a request failed."""


def call(url, body=None, token=None):
    """``(status, JSON body)`` of a GET, or of a POST when there is a body."""
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener.open(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process on a free port, in a process group of its own.

    ``command`` is gunicorn's arguments after ``-c gunicorn.conf.py`` (the
    app, and any setting the bench overrides), or with ``koa`` the whole
    command line of the Koa server; ``gunicorn`` is another gunicorn
    executable (PyPy's).
    """

    def __init__(self, name, command, log_dir, *, koa=False, gunicorn=GUNICORN, **environ):
        port = free_port()
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}.log"
        if koa:
            environ["PORT"] = str(port)
            cwd = KOA_DIR
        else:
            command = [str(gunicorn), "-c", "gunicorn.conf.py", *command]
            environ["BIND"] = f"127.0.0.1:{port}"
            cwd = PROJECT_ROOT
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**os.environ, **environ},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.koa = koa

    def wait_ready(self, path, status=200):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"{self.name}: gunicorn exited with {self.process.returncode}\n{self.log_tail()}")
            try:
                if call(self.url + path)[0] == status:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise HarnessError(f"{self.name}: no answer on {path} within {START_TIMEOUT} s\n{self.log_tail()}")

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self):
        """gunicorn's workers, or the Koa server's one process."""
        if self.koa:
            return [self.process.pid]
        return [pid for pid in all_pids() if parent_pid(pid) == self.process.pid]

    def worker_rss_mb(self):
        """VmRSS of each worker process, in MiB."""
        return [rss_kb(pid) / 1024 for pid in self.worker_pids()]

    def worker_pss_mb(self):
        """Proportional set size of each worker process, in MiB: see pss_kb."""
        return [pss_kb(pid) / 1024 for pid in self.worker_pids()]

    def stop(self):
        """SIGTERM to the whole process group, SIGKILL to whatever is left."""
        signal_group(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()


def signal_group(pgid, sig):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def parent_pid(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def rss_kb(pid):
    return proc_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid):
    """A process's proportional set size: each page it shares counted as 1/n of a page.

    gunicorn's workers are forked from a master that has imported the whole
    app: RSS counts every page they share with it and with one another in
    full, in each worker (about 55 MiB for a worker that adds about 17 of
    its own). The sum of PSS over the processes is the memory they use.
    """
    return proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def proc_kb(path, field):
    """The kB figure of ``field`` (``"VmRSS:"``) in a /proc file."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise HarnessError(f"no {field} in {path}")


def require_wrk():
    if shutil.which("wrk") is None:
        raise HarnessError(WRK_MISSING)


def wrk(url, *, connections, seconds, token=None, body=None):
    """One wrk run: requests/s, p50 and p99 in ms; every response must be a success."""
    command = [
        "wrk", f"--threads={min(2, connections)}", f"--connections={connections}",
        f"--duration={seconds}s", "--timeout=10s", "--latency", f"--script={WRK_SCRIPT}",
    ]
    if token:
        command.append(f"--header=Authorization: Bearer {token}")
    environ = {**os.environ, "WRK_BODY": json.dumps(body) if body else ""}
    finished = subprocess.run(
        command + [url], env=environ, capture_output=True, text=True, timeout=seconds + 60
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("BENCH ")]
    if finished.returncode or not lines:
        raise HarnessError(f"wrk failed on {url}:\n{finished.stdout}{finished.stderr}")
    run = json.loads(lines[-1].removeprefix("BENCH "))
    if run["error_statuses"] or not run["requests"]:
        # One request as wrk sent it, to show what the errors were.
        status, answer = call(url, body, token)
        raise HarnessError(
            f"wrk on {url}: {run['error_statuses']} of {run['requests']} answers were errors;"
            f" one more request now: {status} {str(answer)[:300]}"
        )
    return {
        "connections": connections,
        "rps": run["requests"] / (run["duration_us"] / 1e6),
        "p50": run["p50_us"] / 1000,
        "p99": run["p99_us"] / 1000,
        "socket_errors": run["socket_errors"],
    }


def add_pets(database, rows):
    """Insert ``(id or None, user_id, name, species)`` rows in one transaction, not through the API."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO pets (id, user_id, name, species) VALUES (?, ?, ?, ?)", rows)
        connection.execute("COMMIT")
    finally:
        connection.close()


def generated_pets(user_id, count, first=0):
    return ((None, user_id, f"pet {n}", SPECIES[n % len(SPECIES)]) for n in range(first, first + count))


def copy_database(source, target):
    """A consistent copy of a database that a server has open (SQLite's backup API)."""
    original, copy = sqlite3.connect(source), sqlite3.connect(target)
    try:
        original.backup(copy)
    finally:
        copy.close()
        original.close()


def password_hash(database, user_id):
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    finally:
        connection.close()


def koa_database(path, username, password_hash, pets):
    """The Koa server's database: the original schema (step 1 of migrations.sql), one user and their pets."""
    from jwt_server.db import MIGRATIONS_PATH, migration_steps

    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in migration_steps(MIGRATIONS_PATH.read_text())[0][1]:
            connection.execute(statement)
        user_id = connection.execute(
            "INSERT INTO users (username, passwordHash) VALUES (?, ?)", (username, password_hash)
        ).lastrowid
        connection.executemany(
            "INSERT INTO pets (id, user_id, name, species) VALUES (?, ?, ?, ?)",
            [(pet["id"], user_id, pet["name"], pet["species"]) for pet in pets],
        )
    finally:
        connection.close()
