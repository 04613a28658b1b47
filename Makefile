# make run: start the service on 127.0.0.1:8000; make test: run the test suite.
# Both create .venv and install what they need first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install run test clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
