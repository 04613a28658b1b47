"""gunicorn settings for jwt-server: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The environment is validated here, in the master, before any worker starts:
a bad value stops gunicorn with one line naming the variable instead of a
crowd of workers failing one after another.
"""
import multiprocessing
import os

from jwt_server.config import load_config, read_int, read_or_create_secret

_settings = load_config(os.environ)
if not _settings["JWT_SECRET"]:
    read_or_create_secret()

if os.environ.get("BIND", "").strip():
    bind = [os.environ["BIND"].strip()]
else:
    bind = [f"127.0.0.1:{read_int(os.environ, 'PORT', 8000, low=1, high=65535)}"]

# Threads let one worker serve other requests while a login waits on bcrypt,
# which releases the GIL: logins run in parallel, and keep-alive works.
worker_class = "gthread"
workers = read_int(
    os.environ, "WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1, low=1, high=64
)
threads = 4
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"
