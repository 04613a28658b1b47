"""End to end, many hosts: two real hosts behind nginx, one PostgreSQL on a third.

Each host is a network namespace of its own (``ip netns``, joined by a bridge
with veth pairs): hosts A and B each run ``gunicorn -c gunicorn.conf.py
wsgi:app``, a third runs PostgreSQL, and nginx in front balances A and B with
the upstream block of deploy/nginx-upstream.conf. It needs root; where the
kernel refuses namespaces the test is skipped, saying so.
"""
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import PASSWORD, PROJECT_ROOT, SECRET, clean_environment
from tests.postgres_server import PostgresServer
from tests.servers import GUNICORN, call, free_port, signal_group
from tests.test_nginx_e2e import nginx_binary

UPSTREAM_EXAMPLE = PROJECT_ROOT / "deploy" / "nginx-upstream.conf"
MAX_FAILURES = 5
pytestmark = pytest.mark.e2e
SUBNET = f"10.231.{os.getpid() % 250}"
ADDRESSES = {"a": f"{SUBNET}.2", "b": f"{SUBNET}.3", "db": f"{SUBNET}.4"}
BRIDGE_ADDRESS = f"{SUBNET}.1"


def ip(*args):
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Network:
    """A bridge in this namespace and one namespace per host, each with a veth pair on the bridge."""

    def __init__(self):
        self.tag = f"jwt{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.namespaces = {}

    def build(self):
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host, address in ADDRESSES.items():
            namespace, outside = f"{self.tag}{host}", f"{self.tag}{host}o"
            ip("netns", "add", namespace)
            self.namespaces[host] = namespace
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("link", "set", outside, "master", self.bridge, "up")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")

    def run_in(self, host):
        return ["ip", "netns", "exec", self.namespaces[host]]

    def destroy(self):
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "pids", namespace], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def start_host(network, host, directory, database_url):
    environment = clean_environment(
        DATABASE_URL=database_url,
        JWT_SECRET=SECRET,
        BCRYPT_ROUNDS="4",
        WEB_CONCURRENCY="2",
        BIND=f"{ADDRESSES[host]}:8000",
        TRUSTED_PROXIES="1",
        FORWARDED_ALLOW_IPS=BRIDGE_ADDRESS,
        LOGIN_MAX_FAILURES=str(MAX_FAILURES),
    )
    with open(directory / f"{host}.out", "wb") as out, open(directory / f"{host}.err", "wb") as err:
        return subprocess.Popen(
            [*network.run_in(host), str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT, env=environment, stdout=out, stderr=err, start_new_session=True,
        )


def nginx_config(directory, port):
    upstream = UPSTREAM_EXAMPLE.read_text()
    for example, address in (("10.0.0.11:8000", ADDRESSES["a"]), ("10.0.0.12:8000", ADDRESSES["b"])):
        assert example in upstream, f"deploy/nginx-upstream.conf no longer names {example}"
        upstream = upstream.replace(example, f"{address}:8000")
    temp_paths = "\n".join(
        f"{name}_temp_path {directory / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
user root;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "nginx.err"} notice;
events {{ worker_connections 1024; }}
http {{
{temp_paths}
access_log {directory / "nginx.access"};
{upstream}
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://jwt_server;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
}}
}}
"""


def wait_healthy(base_url, process, log):
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited:\n{log.read_text()}"
        try:
            if call(base_url, "GET", "/health").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{base_url} never became healthy:\n{log.read_text()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: the two-host test needs root for ip netns")
    directory = tmp_path_factory.mktemp("two-hosts")
    network = Network()
    try:
        network.build()
    except subprocess.CalledProcessError as error:
        network.destroy()
        pytest.skip(f"SKIPPED LOUDLY: the kernel refuses network namespaces here: {error.stderr.strip()}")
    processes = {}
    database = PostgresServer(listen=ADDRESSES["db"], prefix=network.run_in("db"))
    try:
        database.start()
        database.execute("CREATE DATABASE jwt")
        url = database.url("jwt", host=ADDRESSES["db"])
        for host in ("a", "b"):
            processes[host] = start_host(network, host, directory, url)
        for host in ("a", "b"):
            wait_healthy(f"http://{ADDRESSES[host]}:8000", processes[host], directory / f"{host}.err")
        port = free_port()
        (directory / "nginx.conf").write_text(nginx_config(directory, port))
        with open(directory / "nginx.stderr", "wb") as stderr:
            processes["nginx"] = subprocess.Popen(
                [nginx_binary(), "-c", str(directory / "nginx.conf")], start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        wait_healthy(f"http://127.0.0.1:{port}", processes["nginx"], directory / "nginx.stderr")
        yield {
            "lb": f"http://127.0.0.1:{port}",
            "a": f"http://{ADDRESSES['a']}:8000",
            "b": f"http://{ADDRESSES['b']}:8000",
            "processes": processes,
            "database": database,
            "directory": directory,
        }
    finally:
        for process in processes.values():
            signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        database.destroy()
        network.destroy()


def register_and_login(base_url, username):
    assert call(base_url, "POST", "/users", {"username": username, "password": PASSWORD}).status == 201
    answer = call(base_url, "POST", "/auth", {"username": username, "password": PASSWORD})
    assert answer.status == 200, answer.body
    return answer.body


def audit_events(cluster, name):
    return sum(
        len(re.findall(rf'"event": "{name}"', (cluster["directory"] / f"{host}.err").read_text()))
        for host in ("a", "b")
    )


def test_a_login_on_host_a_works_on_b_and_a_logout_on_b_ends_it_on_a(cluster):
    tokens = register_and_login(cluster["a"], "travis")
    token = tokens["access_token"]
    assert call(cluster["b"], "GET", "/users/me", token=token).body["username"] == "travis"
    assert call(cluster["lb"], "GET", "/users/me", token=token).status == 200
    assert call(cluster["b"], "POST", "/auth/logout", token=token).status == 204
    assert call(cluster["a"], "GET", "/users/me", token=token).status == 401
    assert call(cluster["lb"], "GET", "/users/me", token=token).status == 401


def test_parallel_wrong_guesses_over_both_hosts_get_at_most_the_limit_of_bcrypt_checks(cluster):
    call(cluster["lb"], "POST", "/users", {"username": "guessed", "password": PASSWORD})
    failed_before = audit_events(cluster, "login_failed")
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(
            lambda i: call(cluster["lb"], "POST", "/auth", {"username": "guessed", "password": f"wrong {i}"}).status,
            range(40),
        ))
    time.sleep(0.5)  # the audit lines of the last answers
    comparisons = audit_events(cluster, "login_failed") - failed_before
    assert comparisons <= MAX_FAILURES
    assert statuses.count(401) == comparisons and statuses.count(429) == 40 - comparisons


def test_a_refresh_raced_on_both_hosts_rotates_once(cluster):
    tokens = register_and_login(cluster["lb"], "racer")
    barrier = threading.Barrier(10)

    def refresh(i):
        barrier.wait()
        host = cluster["a"] if i % 2 else cluster["b"]
        return call(host, "POST", "/auth/refresh", {"refresh_token": tokens["refresh_token"]}).status

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(refresh, range(10)))
    assert sorted(statuses) == [200] + [401] * 9


def test_postgresql_restarted_under_load_gives_503s_then_recovers_with_no_restart(cluster):
    token = register_and_login(cluster["lb"], "steady")["access_token"]
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            answer = call(cluster["lb"], "GET", "/my-pets", token=token)
            statuses.append(answer.status)
            if answer.status == 503:
                assert answer.headers["Retry-After"].isdigit()

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load) for _ in range(4)]
        time.sleep(1)
        cluster["database"].restart()
        time.sleep(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and statuses[-20:].count(200) < 20:
            time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.result()
    assert 503 in statuses
    assert set(statuses) <= {200, 503}
    assert statuses[-20:] == [200] * 20


def test_host_a_killed_mid_load_loses_no_acknowledged_write_and_b_serves(cluster):
    token = register_and_login(cluster["lb"], "writer")["access_token"]
    acknowledged = []

    def write(i):
        if i == 60:
            signal_group(cluster["processes"]["a"].pid, signal.SIGKILL)
        try:
            answer = call(cluster["lb"], "POST", "/pets", {"name": f"pet {i}"}, token=token)
        except ValueError:  # nginx's own 502 page, for a request that was on A when it died
            return 502
        if answer.status == 201:
            acknowledged.append(answer.body["id"])
        return answer.status

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(write, range(200)))
    stored = {pet["id"] for pet in call(cluster["lb"], "GET", "/pets?limit=1000", token=token).body}
    assert set(acknowledged) <= stored
    assert set(results) <= {201, 502}
    assert results[-50:] == [201] * 50  # after the kill, B answers everything
