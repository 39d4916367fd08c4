# `make up` runs Salon; `make test` runs the whole suite against real services.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install up test chromium bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0 is a CPU build on this machine's disk; install it before anything that
	# depends on torch, or pip would fetch a multi-gigabyte CUDA build instead.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

up: install
	$(VENV)/bin/salon up

test: install chromium
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) -m bench.protocol
	$(PY) -m bench.cost
	$(PY) -m bench.append
	$(PY) -m bench.fanout
	$(PY) -m bench.turn_overhead
	$(PY) -m bench.memory
	$(PY) -m bench.rooms
	$(PY) -m bench.simulate
	$(PY) -m bench.projections
	$(PY) -m bench.slow_reader
	$(PY) -m bench.sealing
	$(PY) -m bench.sandbox

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .salon
