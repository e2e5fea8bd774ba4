# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: setup demo test lint typecheck

setup:
	@scripts/setup.sh --system

demo: setup
	$(VENV)/marrowscope demo --out demo-out

test: setup
	scripts/gen_proto.sh --check
	$(VENV)/ruff check service adapters tests benchmarks
	$(VENV)/mypy
	MARROWSCOPE_REQUIRE_TOOLS=1 $(VENV)/python -m pytest -q

lint:
	$(VENV)/ruff check service adapters tests benchmarks
	$(VENV)/mypy
