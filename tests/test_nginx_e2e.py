"""End to end, the production path: Debian's nginx with deploy/nginx.conf, over
TLS, in front of the real gunicorn started with TRUSTED_PROXIES=1.

nginx runs in the foreground from a temporary copy of deploy/nginx.conf in
which only ports and file paths are replaced (and, for the 504, the read
timeout). Clients connect to 127.0.0.1 from other loopback addresses
(127.0.0.2, ...), so the client's address and nginx's (127.0.0.1) differ.
Every wait is bounded.
"""
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from werkzeug.http import HTTP_STATUS_CODES

from tests.helpers import PASSWORD, PROJECT_ROOT, bearer
from tests.servers import Response, exchange, free_port, head, launch, register_and_login, send

pytestmark = pytest.mark.e2e

NGINX_CONF = PROJECT_ROOT / "deploy" / "nginx.conf"
SYSTEMD_UNIT = PROJECT_ROOT / "deploy" / "jwt-server.service"
HOST = "api.example.com"
ORIGIN = "https://app.example.com"  # the origin deploy/nginx.conf lets read its errors
START_TIMEOUT = 10
REQUEST_TIMEOUT = 30
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def nginx_binary():
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        pytest.fail("nginx is not installed; .ci/run installs it: apt-get install -y nginx")
    return found


def make_certificate(directory):
    """A self-signed certificate for api.example.com and 127.0.0.1."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-keyout", str(key), "-out", str(certificate),
         "-addext", f"subjectAltName=DNS:{HOST},IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return certificate, key


def site_config(directory, upstream_port, https_port, http_port, certificate, key, extra=()):
    """deploy/nginx.conf with this test's ports and paths; each original must be there."""
    text = NGINX_CONF.read_text()
    replacements = [
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("/etc/letsencrypt/live/api.example.com/fullchain.pem", str(certificate)),
        ("/etc/letsencrypt/live/api.example.com/privkey.pem", str(key)),
        ("/var/log/nginx/jwt-server.access.log", str(directory / "access.log")),
        *extra,
    ]
    for old, new in replacements:
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def main_config(directory, site):
    """What Debian's /etc/nginx/nginx.conf provides around a site, with paths under ``directory``."""
    temp_paths = "\n".join(
        f"    {name}_temp_path {directory / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""daemon off;
{user}
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} notice;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
{temp_paths}
    include {site};
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen
    directory: Path
    https_port: int
    http_port: int
    certificate: Path

    def request(self, method, path, body=None, headers=None, source="127.0.0.2", port=None, tls=True):
        """One request on a new connection from ``source``; the body is JSON or bytes."""
        port = port or (self.https_port if tls else self.http_port)
        if tls:
            context = ssl.create_default_context(cafile=str(self.certificate))
            connection = http.client.HTTPSConnection(
                "127.0.0.1", port, context=context, timeout=REQUEST_TIMEOUT, source_address=(source, 0)
            )
        else:
            connection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=REQUEST_TIMEOUT, source_address=(source, 0)
            )
        headers = {"Host": HOST, **(headers or {})}
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        finally:
            connection.close()
        if "json" in answer.headers.get("Content-Type", ""):
            content = json.loads(content)
        return Response(answer.status, answer.headers, content)

    def access_log(self):
        return (self.directory / "access.log").read_text()

    def error_log(self):
        return (self.directory / "error.log").read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=START_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=START_TIMEOUT)


@pytest.fixture
def start_nginx(tmp_path):
    """Start nginx with deploy/nginx.conf in front of ``upstream_port``; stop it afterwards."""
    binary = nginx_binary()
    started = []

    def start(upstream_port, extra=()):
        directory = tmp_path / f"nginx{len(started)}"
        directory.mkdir()
        certificate, key = make_certificate(directory)
        https_port, http_port = free_port(), free_port()
        site = directory / "jwt-server.conf"
        site.write_text(site_config(directory, upstream_port, https_port, http_port, certificate, key, extra))
        config = directory / "nginx.conf"
        config.write_text(main_config(directory, site))
        command = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]

        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=START_TIMEOUT)
        assert checked.returncode == 0, checked.stderr
        assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr

        with open(directory / "nginx.out", "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=output, start_new_session=True)
        nginx = Nginx(process, directory, https_port, http_port, certificate)
        started.append(nginx)
        wait_for_port(nginx)
        return nginx

    yield start
    for nginx in started:
        nginx.stop()


def wait_for_port(nginx):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if nginx.process.poll() is not None:
            pytest.fail(f"nginx exited with {nginx.process.returncode}:\n{nginx.error_log()}")
        try:
            socket.create_connection(("127.0.0.1", nginx.https_port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx did not listen within {START_TIMEOUT} s:\n{nginx.error_log()}")


@pytest.fixture
def gunicorn(tmp_path):
    """The real gunicorn as deployed behind one proxy: TRUSTED_PROXIES=1, CORS_ORIGINS=the app."""
    server = launch(tmp_path, workers=2, TRUSTED_PROXIES="1", CORS_ORIGINS=ORIGIN)
    yield server
    server.stop()


@pytest.fixture
def proxied(gunicorn, start_nginx):
    return start_nginx(int(gunicorn.base_url.rsplit(":", 1)[1]))


def log_line(read_log, request_id):
    """The one line of ``read_log()`` for the request; servers log just after answering."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        log = read_log()
        lines = [line for line in log.splitlines() if f"request_id={request_id}" in line]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, log
            return lines[0]
        time.sleep(0.05)


def assert_nginx_problem(answer, status, origin=ORIGIN):
    """A problem document in the app's shape, with the headers the app would send."""
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert set(answer.body) == PROBLEM_KEYS, answer.body
    assert answer.body["type"] == "about:blank"
    assert answer.body["status"] == status
    assert answer.body["title"] == HTTP_STATUS_CODES[status]
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", answer.body["code"])
    assert answer.body["detail"].endswith(".")
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]
    assert answer.headers["Vary"] == "Origin"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    assert answer.headers["X-Request-ID"]


def test_e2e_nginx_serves_the_contract_over_tls(proxied):
    registered = proxied.request("POST", "/users", {"username": "travis", "password": PASSWORD})
    assert registered.status == 201
    assert registered.headers["Strict-Transport-Security"] == "max-age=63072000"
    login = proxied.request("POST", "/auth", {"username": "Travis", "password": PASSWORD})
    assert login.status == 200
    assert login.body["token_type"] == "Bearer"
    assert login.headers["Cache-Control"] == "no-store"
    token = login.body["access_token"]

    created = proxied.request("POST", "/pets", {"name": "Bunny", "species": "dog"}, bearer(token))
    assert created.status == 201
    assert created.headers["Location"] == f"/pets/{created.body['id']}"
    pet_url = created.headers["Location"]
    assert proxied.request("GET", "/my-pets", headers=bearer(token)).body == [created.body]
    renamed = proxied.request("PATCH", pet_url, {"name": "Bugs"}, bearer(token))
    assert renamed.body == {**created.body, "name": "Bugs"}
    assert proxied.request("DELETE", pet_url, headers=bearer(token)).status == 204

    # The app's own errors pass through nginx untouched.
    missing = proxied.request("GET", pet_url, headers=bearer(token))
    assert missing.status == 404
    assert missing.body["code"] == "pet_not_found"
    anonymous = proxied.request("GET", "/my-pets")
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Bearer realm="jwt-server"')
    assert anonymous.headers["Strict-Transport-Security"] == "max-age=63072000"

    renewed = proxied.request("POST", "/auth/refresh", {"refresh_token": login.body["refresh_token"]})
    assert renewed.status == 200
    assert renewed.body["refresh_token"] != login.body["refresh_token"]
    token = renewed.body["access_token"]
    assert proxied.request("GET", "/users/me", headers=bearer(token)).body["username"] == "travis"
    assert proxied.request("POST", "/auth/logout", headers=bearer(token)).status == 204
    assert proxied.request("GET", "/users/me", headers=bearer(token)).body["code"] == "invalid_token"


def test_e2e_nginx_passes_the_apps_cors_preflight(proxied):
    preflight = proxied.request("OPTIONS", "/pets", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert preflight.status in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    stranger = proxied.request("OPTIONS", "/pets", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST",
    })
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_e2e_plain_http_is_redirected_to_https_keeping_the_method(proxied):
    answer = proxied.request("POST", "/auth", {"username": "travis"}, tls=False)
    assert answer.status == 308
    assert answer.headers["Location"] == f"https://{HOST}/auth"


def test_e2e_nginx_and_gunicorn_log_one_request_id(proxied, gunicorn):
    chosen = proxied.request("GET", "/health", headers={"X-Request-ID": "trace-42.a_b"})
    assert chosen.headers["X-Request-ID"] == "trace-42.a_b"
    generated = proxied.request("GET", "/health", headers={"X-Request-ID": "not safe to log!"})
    request_id = generated.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    for expected in ("trace-42.a_b", request_id):
        assert '"GET /health HTTP/1.0" 200' in log_line(gunicorn.access_log, expected)
        assert '"GET /health HTTP/1.1" 200' in log_line(proxied.access_log, expected)


def test_e2e_app_sees_the_client_address_from_nginx_not_the_clients_claim(proxied, gunicorn):
    register_and_login(gunicorn, "travis")
    spoofed = {"X-Forwarded-For": "203.0.113.7, 198.51.100.9"}
    tokens = {}
    for client in ("127.0.0.2", "127.0.0.3"):
        answer = proxied.request(
            "POST", "/auth", {"username": "travis", "password": PASSWORD},
            {**spoofed, "X-Request-ID": f"login-from-{client}"}, source=client,
        )
        assert answer.status == 200
        tokens[client] = answer.body["access_token"]
        # gunicorn's first field is REMOTE_ADDR as the app has it, after ProxyFix.
        assert log_line(gunicorn.access_log, f"login-from-{client}").startswith(f"{client} - ")
        assert log_line(proxied.access_log, f"login-from-{client}").startswith(f"{client} - ")

    # The sessions the two logins opened record the two clients' addresses.
    sessions = proxied.request("GET", "/users/me/sessions", headers=bearer(tokens["127.0.0.3"])).body
    proxied_sessions = {session["ip"]: session["current"] for session in sessions if session["ip"] != "127.0.0.1"}
    assert proxied_sessions == {"127.0.0.2": False, "127.0.0.3": True}
    assert "203.0.113.7" not in gunicorn.access_log() + gunicorn.stderr()
    assert "198.51.100.9" not in gunicorn.access_log() + gunicorn.stderr()


def test_e2e_nginx_rate_limit_on_credentials_is_a_problem_document(proxied):
    answers = []
    for _ in range(40):
        answers.append(proxied.request("POST", "/users", {}, {"Origin": ORIGIN}, source="127.0.0.4"))
        if answers[-1].status == 429:
            break
    limited = answers[-1]
    assert_nginx_problem(limited, 429)
    assert limited.body["code"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) >= 1
    # Until then, the app answered: the limit allows a burst.
    assert len(answers) > 5
    assert {answer.body["code"] for answer in answers[:-1]} == {"validation_error"}

    # POST /auth shares the limit; reads, other routes and other clients do not.
    login = proxied.request("POST", "/auth", {"username": "x", "password": "y"}, source="127.0.0.4")
    assert login.status == 429
    assert "Access-Control-Allow-Origin" not in login.headers
    assert proxied.request("GET", "/health", source="127.0.0.4").status == 200
    assert proxied.request("POST", "/pets", {}, source="127.0.0.4").status == 401
    assert proxied.request("POST", "/users", {}, source="127.0.0.5").status == 422


def test_e2e_nginx_body_limit_is_the_apps_own(proxied, gunicorn):
    _, token = register_and_login(gunicorn, "travis")

    def body_of(size):
        padding = size - len(json.dumps({"name": ""}))
        return json.dumps({"name": "x" * padding}).encode()

    headers = bearer(token, **{"Content-Type": "application/json", "Origin": ORIGIN})
    at_limit = proxied.request("POST", "/pets", body_of(64 * 1024), headers)
    assert at_limit.status == 422  # the app's answer: the name is too long
    over = proxied.request("POST", "/pets", body_of(64 * 1024 + 1), headers)
    assert_nginx_problem(over, 413)
    # Word for word what the app itself answers for the same request.
    direct = gunicorn.call("POST", "/pets", {"name": "x" * (64 * 1024)}, token)
    assert direct.status == 413
    assert over.body == direct.body


def test_e2e_nginx_answers_502_problem_document_when_gunicorn_is_stopped(proxied, gunicorn):
    assert proxied.request("GET", "/health").status == 200
    gunicorn.stop()
    for method, path in (("GET", "/my-pets"), ("POST", "/auth")):
        answer = proxied.request(method, path, {} if method == "POST" else None, {"Origin": ORIGIN})
        assert_nginx_problem(answer, 502)
        assert answer.body["code"] == "bad_gateway"
    assert "Access-Control-Allow-Origin" not in proxied.request("GET", "/health").headers


def test_e2e_nginx_answers_504_problem_document_when_gunicorn_hangs(start_nginx):
    # A listening socket that never answers stands for a stuck gunicorn.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        nginx = start_nginx(silent.getsockname()[1], extra=[("proxy_read_timeout    30s;", "proxy_read_timeout 1s;")])
        answer = nginx.request("GET", "/health", headers={"Origin": ORIGIN, "X-Request-ID": "slow-1"})
    assert_nginx_problem(answer, 504)
    assert answer.body["code"] == "gateway_timeout"
    assert answer.headers["X-Request-ID"] == "slow-1"


def send_raw(nginx, data):
    """``data`` as it is, over TLS: for requests no HTTP client would send."""
    context = ssl.create_default_context(cafile=str(nginx.certificate))
    connection = socket.create_connection(("127.0.0.1", nginx.https_port), source_address=("127.0.0.2", 0))
    return exchange(context.wrap_socket(connection, server_hostname=HOST), data)


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (head("TRACE", "/health", f"Origin: {ORIGIN}"), 405),
        (head("GET", "/health", f"Origin: {ORIGIN}", "X-Long: " + "a" * 9000), 431),
        (head("POST", "/users", f"Origin: {ORIGIN}", "Transfer-Encoding: chunked") + b"zz\r\n{}\r\n0\r\n\r\n", 400),
        (head("POST", "/users", f"Origin: {ORIGIN}", "Transfer-Encoding: gzip"), 501),
    ],
    ids=["trace", "header-line", "chunk-framing", "transfer-coding"],
)
def test_e2e_nginx_own_errors_are_problem_documents(proxied, request_bytes, status):
    answer = send_raw(proxied, request_bytes)
    assert_nginx_problem(answer, status)
    if status == 405:
        assert "POST" in answer.headers["Allow"]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (head("GET", "/health?q=" + "a" * 9000, f"Origin: {ORIGIN}"), 414),
        (b"GET /health HTTP/1.1 extra\r\nHost: api.example.com\r\n\r\n", 400),
    ],
    ids=["request-line-length", "request-line-syntax"],
)
def test_e2e_nginx_errors_in_the_request_line_are_problem_documents(proxied, request_bytes, status):
    answer = send_raw(proxied, request_bytes)
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert set(answer.body) == PROBLEM_KEYS
    assert answer.body["status"] == status and answer.body["title"] == HTTP_STATUS_CODES[status]
    assert answer.headers["X-Request-ID"] and answer.headers["Strict-Transport-Security"]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        # Over gunicorn's 4094 bytes, under nginx's 8 KiB: nginx passes it on.
        (head("GET", "/health?q=" + "a" * 5000, f"Origin: {ORIGIN}"), 414),
        (head("GET", "/health", f"Origin: {ORIGIN}", "X-Control: a\x01b"), 400),
    ],
    ids=["request-line-length", "control-character"],
)
def test_e2e_gunicorns_own_errors_pass_through_nginx_as_problem_documents(proxied, gunicorn, request_bytes, status):
    answer = send_raw(proxied, request_bytes)
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.body == send(gunicorn, request_bytes).body
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Strict-Transport-Security"]


def test_e2e_graceful_reload_under_load_drops_no_request(proxied, gunicorn):
    _, token = register_and_login(gunicorn, "travis")
    results, errors = [], []
    stop = threading.Event()

    def client(number):
        for count in range(300):
            if stop.is_set():
                return
            try:
                if count % 2:
                    answer = proxied.request("POST", "/pets", {"name": f"pet-{number}-{count}"}, bearer(token))
                else:
                    answer = proxied.request("GET", "/my-pets", headers=bearer(token))
                results.append(answer.status)
            except OSError as error:
                errors.append(repr(error))

    def wait_for(condition, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} within {timeout} s:\n{gunicorn.stderr()}"
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 40, "40 answers before the reload")
        wait_for(lambda: gunicorn.stderr().count("Booting worker") == 2, "both workers up")
        old_workers = set(re.findall(r"Booting worker with pid: (\d+)", gunicorn.stderr()))
        os.kill(gunicorn.process.pid, signal.SIGHUP)
        wait_for(
            lambda: set(re.findall(r"Worker exiting \(pid: (\d+)\)", gunicorn.stderr())) >= old_workers,
            "the old workers gone",
        )
        answered_at_reload = len(results)
        wait_for(lambda: len(results) >= answered_at_reload + 40, "40 answers after the reload")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)

    assert errors == []
    assert set(results) <= {200, 201}, sorted(set(results))
    new_workers = set(re.findall(r"Booting worker with pid: (\d+)", gunicorn.stderr())) - old_workers
    assert len(old_workers) == len(new_workers) == 2
    served_by = set(re.findall(r"worker=<(\d+)>", gunicorn.access_log()))
    assert served_by & old_workers and served_by & new_workers
    assert gunicorn.process.poll() is None
    pets = gunicorn.call("GET", "/my-pets", token=token).body
    assert len(pets) == results.count(201)


def test_systemd_unit_is_valid_and_hardened(tmp_path):
    """systemd checks the unit offline, with its paths pointed at this checkout."""
    unit_text = SYSTEMD_UNIT.read_text()
    assert "ExecStart=/srv/jwt-server/.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app\n" in unit_text
    unit = tmp_path / "jwt-server.service"
    unit.write_text(unit_text.replace("/srv/jwt-server", str(PROJECT_ROOT)))
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert unit.name not in verified.stderr, verified.stderr
    # The threshold is in tenths of the printed level: at most 2.0, "OK".
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True, text=True, timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:]
    assert "Overall exposure level for jwt-server.service" in security.stdout


def test_e2e_nginx_metadata_names_the_public_https_urls_and_the_jwks_verifies_tokens(tmp_path, start_nginx):
    server = launch(tmp_path, workers=2, name="keys", TRUSTED_PROXIES="1", JWT_ALGORITHM="EdDSA",
                    JWT_ISSUER=f"https://{HOST}", JWKS_MAX_AGE="120")
    try:
        proxied = start_nginx(int(server.base_url.rsplit(":", 1)[1]))
        metadata = proxied.request("GET", "/.well-known/oauth-authorization-server")
        proxied.request("POST", "/users", {"username": "travis", "password": PASSWORD})
        token = proxied.request("POST", "/auth", {"username": "travis", "password": PASSWORD}).body["access_token"]
        jwks_path = metadata.body["jwks_uri"].removeprefix(f"https://{HOST}")
        jwks = proxied.request("GET", jwks_path)
    finally:
        server.stop()

    assert metadata.status == 200
    assert metadata.body == {
        "issuer": f"https://{HOST}",
        "jwks_uri": f"https://{HOST}/.well-known/jwks.json",
        "token_endpoint": f"https://{HOST}/auth",
    }
    assert metadata.headers["Cache-Control"] == "public, max-age=120"
    assert jwks.status == 200
    assert jwks.headers["Cache-Control"] == "public, max-age=120"
    [key] = jwks.body["keys"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], issuer=f"https://{HOST}")
    assert claims["sub"] == "1"
