# chunky: two set-up commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The llama-cpp-python source build takes ~6 minutes here: build it once into a wheel and reuse it. The wheel is
# native code for one CPU: scripts/install.sh keeps it under $(WHEELHOUSE)/<scripts/cpu-key.sh>/.
WHEELHOUSE ?= $(HOME)/.cache/chunky/wheels
LLAMA_CPP_VERSION := 0.3.36
STAMP := $(VENV)/.chunky-installed

.PHONY: install demo test test-fast lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) WHEELHOUSE=$(WHEELHOUSE) LLAMA_CPP_VERSION=$(LLAMA_CPP_VERSION) bash scripts/install.sh
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP) lint
	bash scripts/install-browser.sh
	bash scripts/install-promptfoo.sh >/dev/null
	$(BIN)/python -m pytest -q -ra

# Lint and types, also the first step of `make test` (so CI runs them).
lint: $(STAMP)
	$(BIN)/ruff check chunky tests bench
	$(BIN)/mypy

# A quick local pass: everything except the tests marked slow (a real model, server, training or the 89k mix).
# CI and `make test` run them all.
test-fast: $(STAMP) lint
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q -ra -m "not slow"

bench: $(STAMP)
	bash scripts/bench.sh

clean-venv:
	rm -rf $(VENV)
