# make run: start the service on 127.0.0.1:8000; make test: run the test suite.
# make bench: performance figures, side by side (needs wrk; bench/run.py);
# make bench-stack: also other gunicorn worker models and PyPy;
# make bench-smoke: the same steps for ~2 s each, to check the bench itself (CI).
# make install-pypy, run-pypy, test-pypy: the same on PyPy, in .venv-pypy.
# All create .venv and install what they need first: make run the service
# alone, make test (and make install, for development) the test tools too.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install system-packages run test bench bench-stack bench-smoke clean pypy install-pypy run-pypy test-pypy

install: $(TEST_STAMP)

# The service's own dependencies: what make run needs, a few seconds' install.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $(STAMP)

# The test extras (Playwright, schemathesis, cryptography: hundreds of MB),
# added to the same .venv; make run never waits for them.
$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

# Debian programs the tests and the bench run for real: nginx and openssl
# (test_nginx_e2e.py), systemd-analyze (the unit check), Chromium, driven by
# Playwright (test_browser_e2e.py; never `playwright install`), wrk (bench),
# PostgreSQL's initdb/pg_ctl (the tests start a throwaway server of their own;
# the cluster the package may start is never used), ip (two-host test).
# apt-get installs whichever is missing, which needs root.
system-packages:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# Lint first (rules in pyproject.toml), then every test; -m "not e2e" in
# PYTEST_ARGS leaves out those that start gunicorn, nginx or Chromium.
test: $(TEST_STAMP) system-packages
	$(VENV)/bin/ruff check jwt_server tests bench
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The same on PyPy (Debian's pypy3, Python 3.9), in .venv-pypy beside CPython's
# .venv: make install-pypy, make run-pypy, make test-pypy (PYTEST_ARGS as above).
# gevent has no PyPy wheel: pip builds it (a minute or two; pypy3-dev has the
# headers). psycopg is its pure-Python build there, on Debian's libpq5.
PYPY_VENV := .venv-pypy

pypy:
	@dpkg -s pypy3 pypy3-venv pypy3-dev libpq5 >/dev/null 2>&1 || \
	  (echo "apt-get install: pypy3 pypy3-venv pypy3-dev libpq5" && apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv pypy3-dev libpq5 >/dev/null)

# pypy3's bundled pip (23.0) took minutes resolving the service's dependencies.
$(PYPY_VENV)/.pip: | pypy
	pypy3 -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/python -m pip install --quiet --upgrade pip
	touch $@

# PyPy sizes its GC nursery from the CPU cache /proc/cpuinfo reports: hundreds
# of MiB per process on VMs that report a whole L3. 4 MB unless set.
install-pypy run-pypy test-pypy: $(PYPY_VENV)/.pip
	PYPY_GC_NURSERY=$${PYPY_GC_NURSERY:-4MB} $(MAKE) $(@:-pypy=) PYTHON=pypy3 VENV=$(PYPY_VENV)

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

# make bench-stack also measures gevent workers (gevent in the bench venv), and
# the service and bare Flask on PyPy: Debian's pypy3 (Python 3.9), in a venv of
# its own with the service's dependencies only, as .venv-bench is for CPython.
PYPY_BENCH_VENV := .venv-bench-pypy

$(BENCH_VENV)/.gevent: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m pip install --quiet gevent packaging  # gunicorn's gevent worker imports packaging
	touch $@

$(PYPY_BENCH_VENV)/.installed: setup.cfg pyproject.toml | pypy
	pypy3 -m venv $(PYPY_BENCH_VENV)
	$(PYPY_BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PYPY_BENCH_VENV)/bin/python -m pip install --quiet -e .
	touch $@

# The load client of the realtime bench: socket.io-client, as browser apps use it.
SOCKETS_STAMP := bench/sockets/node_modules/.installed

$(SOCKETS_STAMP): bench/sockets/package.json bench/sockets/package-lock.json
	cd bench/sockets && npm ci --no-audit --no-fund --loglevel=error
	touch $(SOCKETS_STAMP)

bench: $(BENCH_STAMP) $(KOA_STAMP) $(SOCKETS_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run
	$(BENCH_VENV)/bin/python -m bench.sockets

bench-stack: $(BENCH_VENV)/.gevent $(KOA_STAMP) $(PYPY_BENCH_VENV)/.installed system-packages
	$(BENCH_VENV)/bin/python -m bench.run --stack

bench-smoke: $(BENCH_STAMP) $(KOA_STAMP) $(SOCKETS_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run --smoke
	$(BENCH_VENV)/bin/python -m bench.sockets --smoke

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(PYPY_VENV) $(PYPY_BENCH_VENV) bench/koa/node_modules bench/sockets/node_modules *.egg-info .pytest_cache
