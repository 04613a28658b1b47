# make run: start the service on 127.0.0.1:8000; make test: run the test suite.
# make bench: performance figures, side by side (needs wrk; bench/run.py);
# make bench-smoke: the same steps for ~2 s each, to check the bench itself (CI).
# All create .venv and install what they need first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install system-packages run test bench bench-smoke clean

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

bench: $(BENCH_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run

bench-smoke: $(BENCH_STAMP) system-packages
	$(BENCH_VENV)/bin/python -m bench.run --smoke

clean:
	rm -rf $(VENV) $(BENCH_VENV) *.egg-info .pytest_cache
