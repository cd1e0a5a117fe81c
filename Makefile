# pyxen: `make demo` and `make test` do all set-up on a fresh Debian machine.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# gcc/binutils build the guests; libxen-dev's headers check our ABI layouts;
# qemu-system-x86 runs the same guest ELFs for comparison; xenstore-utils are
# real xenstore clients (toolstack tests).
APT_PKGS := gcc binutils make libc6-dev libxen-dev xenstore-utils python3-venv python3-dev \
            qemu-system-x86
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv guests demo test bench lint clean

all: venv guests

# Debian packages: installed only when one is missing, so repeated runs stay fast.
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    $$missing; \
	fi

$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: deps $(STAMP)

guests: deps
	$(MAKE) -C guests

demo: venv guests
	$(VENV)/bin/pyxen boot guests/hello/hello.cfg

lint: venv
	$(VENV)/bin/ruff check pyxen tests bench

test: venv guests lint
	$(VENV)/bin/pytest -q -n 2 tests

bench: venv guests
	$(PY) bench/run.py

clean:
	$(MAKE) -C guests clean
	rm -rf $(VENV) build *.egg-info
