# The two commands a fresh machine needs are `make run` and `make test`; both
# create .venv and install into it first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.installed-bench
LINT_PATHS := $(wildcard src tests benchmarks examples)

.PHONY: run test lint unit bench test-all clean

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $@

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/torsion echo --listen tcp:8000:interface=127.0.0.1

lint: $(INSTALLED)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: lint
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

bench: $(BENCH_INSTALLED)
	$(BIN)/python benchmarks/run.py

# The suite on every CPython 3.11+ found on PATH or under pyenv, each in its
# own .venv-X.Y.
test-all:
	@found=0; \
	for exe in $$(scripts/find-pythons); do \
		ver=$$($$exe -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "== CPython $$ver ($$exe)"; found=1; \
		test -x .venv-$$ver/bin/python || $$exe -m venv .venv-$$ver || exit 1; \
		.venv-$$ver/bin/python -m pip install --quiet -e '.[test]' || exit 1; \
		.venv-$$ver/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done; \
	if [ $$found -eq 0 ]; then echo "no CPython 3.11+ found" >&2; exit 1; fi

clean:
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache .hypothesis
