# Two entry points for a fresh machine: `make run` and `make test`. Each creates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The verification hot path compiled with mypyc (see setup.py); rebuilt whenever a source of the
# two packages it lives in changes, so a test never runs a stale build.
COMPILED := $(VENV)/.compiled
HOT_SOURCES := $(wildcard credential/*.py verifier/*.py) setup.py

.PHONY: run test lint bench compile clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(COMPILED): $(STAMP) $(HOT_SOURCES)
	@echo "compiling the verification hot path (mypyc, about half a minute)..."
	@mkdir -p build
	@PASAPORTE_COMPILE=1 $(BIN)/python setup.py build_ext --inplace > build/compile.log 2>&1 \
		|| { tail -n 40 build/compile.log; echo "compilation failed: see build/compile.log"; exit 1; }
	@# The build skips what it finds unchanged; the stamp on the library says "current for these
	@# sources", which is what the tests check (tests/conftest.py).
	@touch credential/_hotpath__mypyc*.so
	touch $(COMPILED)

compile: $(COMPILED)

run: $(COMPILED)
	$(BIN)/python -m pasaporte.demo

test: $(COMPILED)
	$(BIN)/ruff check .
	$(BIN)/mypy
	PASAPORTE_EXPECT_COMPILED=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(COMPILED)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info
	find . -path ./.venv -prune -o -name '*.so' -print -exec rm -f {} +
