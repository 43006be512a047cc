# mailpost: `make run` starts a development server, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck bench bench-pop3 bench-imap bench-push clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mailpost needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

run: install
	$(BIN)/mailpost serve

test: install
	$(BIN)/pytest -n auto -q

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/smtp_ingest.py

bench-pop3: install
	$(BIN)/python bench/pop3_download.py

bench-imap: install
	$(BIN)/python bench/imap_load.py

bench-push: install
	$(BIN)/python bench/push_latency.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
