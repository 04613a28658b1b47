# make run: start the service on 127.0.0.1:8000; make test: run the test suite.
# make bench: performance figures, side by side (needs wrk; bench/run.py);
# make bench-stack: also other gunicorn worker models and PyPy;
# make bench-smoke: the same steps for ~2 s each, to check the bench itself (CI).
# All create .venv and install what they need first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install system-packages run test bench bench-stack bench-smoke clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian programs the tests and the bench run for real: nginx and openssl
# (test_nginx_e2e.py), systemd-analyze (the unit check), Chromium, driven by
# Playwright (test_browser_e2e.py; never `playwright install`), wrk (bench).
# apt-get installs whichever is missing, which needs root.
system-packages:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# Lint first (rules in pyproject.toml), then every test; -m "not e2e" in
# PYTEST_ARGS leaves out those that start gunicorn, nginx or Chromium.
test: install system-packages
	$(VENV)/bin/ruff check jwt_server tests bench
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The bench measures the service as deployed: a venv with the service's own
# dependencies only (the test extras would put more in every worker).
$(BENCH_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	touch $(BENCH_STAMP)

# The Koa server it replaces (bench/koa), from its lockfile. sqlite3 has no
# prebuilt binary reachable here (they are on GitHub), so npm builds it, against
# Debian's libsqlite3 (npm_config_sqlite=/usr): the same SQLite the service uses,
# and a minute of compiling instead of SQLite's whole amalgamation.
KOA_STAMP := bench/koa/node_modules/.installed

$(KOA_STAMP): bench/koa/package.json bench/koa/package-lock.json
	cd bench/koa && npm_config_sqlite=/usr npm ci --no-audit --no-fund --loglevel=error
	touch $(KOA_STAMP)

# make bench-stack also measures gevent workers (gevent in the bench venv) and
# bare Flask on PyPy: Debian's pypy3 (Python 3.9; bare Flask needs only flask and
# gunicorn). Only the ceiling runs there: the service needs Python 3.10.
PYPY_VENV := .venv-pypy

$(BENCH_VENV)/.gevent: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m pip install --quiet gevent packaging  # gunicorn's gevent worker imports packaging
	touch $@

$(PYPY_VENV)/.installed:
	command -v pypy3 >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv >/dev/null)
	pypy3 -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/python -m pip install --quiet flask gunicorn
	touch $@

# The load client of the realtime bench: socket.io-client, as browser apps use it.
SOCKETS_STAMP := bench/sockets/node_modules/.installed

$(SOCKETS_STAMP): bench/sockets/package.json bench/sockets/package-lock.json
	cd bench/sockets && npm ci --no-audit --no-fund --loglevel=error
	touch $(SOCKETS_STAMP)

bench: $(BENCH_STAMP) $(KOA_STAMP) $(SOCKETS_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run
	$(BENCH_VENV)/bin/python -m bench.sockets

bench-stack: $(BENCH_VENV)/.gevent $(KOA_STAMP) $(PYPY_VENV)/.installed system-packages
	$(BENCH_VENV)/bin/python -m bench.run --stack

bench-smoke: $(BENCH_STAMP) $(KOA_STAMP) $(SOCKETS_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run --smoke
	$(BENCH_VENV)/bin/python -m bench.sockets --smoke

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(PYPY_VENV) bench/koa/node_modules bench/sockets/node_modules *.egg-info .pytest_cache
