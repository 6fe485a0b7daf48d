# lockgate's one task runner. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-all lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install ## run the whole loop on the embedded defaults (SQLite, no API keys)
	$(BIN)/lockgate demo

test: install ## the test suite (PostgreSQL and Redis on 127.0.0.1 when present)
	$(BIN)/python -m pytest -q

TYPECHECK := build/typecheck/lockgate

$(TYPECHECK): ## the folders under their installed names, for mypy (see pyproject.toml)
	mkdir -p $(TYPECHECK)
	for p in registry evals finetune gateway; do ln -sfn ../../../$$p $(TYPECHECK)/$$p; done

lint: install $(TYPECHECK)
	$(BIN)/ruff check registry evals finetune gateway tests
	$(BIN)/ruff format --check registry evals finetune gateway tests
	$(BIN)/mypy

bench: install ## benchmarks print their figures; see docs/benchmarks.md
	$(BIN)/python tests/benchmarks/registry_resolve.py
	$(BIN)/python tests/benchmarks/cli_startup.py
	$(BIN)/python tests/benchmarks/evals_throughput.py
	# needs wrk (apt-get install -y wrk); a LiteLLM column with --litellm-venv PATH
	$(BIN)/python tests/benchmarks/gateway_overhead.py --duration 5

docs: install ## regenerate the CLI and configuration references (--help, settings models)
	$(BIN)/python -m lockgate.gateway.docgen > docs/cli.md
	$(BIN)/python -m lockgate.gateway.docgen configuration docs/configuration.md

clean:
	rm -rf $(VENV) .demo build *.egg-info
