# The two commands a fresh machine needs are `make run` and `make test`; both
# create .venv and install into it first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.installed-bench
LINT_PATHS := $(wildcard src tests benchmarks examples)
# The modules setup.py compiles with mypyc: editing one rebuilds them.
COMPILED := $(shell sed -n 's/^ *"\(src\/[^"]*\.py\)",$$/\1/p' setup.py)
# A copy of the package without its compiled modules, to test the pure build.
PURE := build/pure

.PHONY: run test lint unit bench test-all clean

$(INSTALLED): pyproject.toml setup.py $(COMPILED)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $@

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/torsion web --path examples/site --listen tcp:8080:interface=127.0.0.1

lint: $(INSTALLED)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# The suite runs twice: on the build users get (compiled where a C compiler
# works) and on the pure-Python sources. pytest exits 5 when it collected
# nothing: that is a broken suite, not a pass.
PYTEST = status=0; $(BIN)/python -m pytest $(1) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi

test: lint
	@echo "== the installed build"
	@$(call PYTEST,)
	@echo "== pure Python"
	@rm -rf $(PURE) && mkdir -p $(PURE) && cp -R src/torsion $(PURE)/ && \
		find $(PURE) -name '*.so' -delete
	@export PYTHONPATH=$(CURDIR)/$(PURE) TORSION_EXPECT_COMPILED=0; \
		$(call PYTEST,-q -p no:cacheprovider)

bench: $(BENCH_INSTALLED)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/transports.py
	$(BIN)/python benchmarks/framing.py
	$(BIN)/python benchmarks/amp.py
	$(BIN)/python benchmarks/dns.py
	$(BIN)/python benchmarks/web.py

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
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	find src -name '*.so' -delete
