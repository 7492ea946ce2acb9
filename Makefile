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

# Whether this machine can build C extensions (a compiler and Python's headers). Where it cannot,
# everything runs as the same code interpreted (slower scans, same results) instead of failing.
CAN_COMPILE = $(BIN)/python -c 'import os, shutil, sys, sysconfig; \
	cc = (sysconfig.get_config_var("CC") or "cc").split()[0]; \
	headers = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
	sys.exit(0 if shutil.which(cc) and os.path.exists(headers) else 1)'

$(COMPILED): $(STAMP) $(HOT_SOURCES)
	@if ! $(CAN_COMPILE); then \
		echo "sin compilador de C: la verificación corre como Python interpretado (más lenta) /"; \
		echo "no C compiler: verification runs as interpreted Python (slower; for make bench" \
			"install one, e.g. apt-get install gcc python3-dev)"; \
		find credential verifier -name '*.so' -delete; rm -f $(COMPILED); \
		exit 0; \
	fi; \
	echo "compiling the verification hot path (mypyc, about half a minute)..."; \
	mkdir -p build; \
	PASAPORTE_COMPILE=1 $(BIN)/python setup.py build_ext --inplace > build/compile.log 2>&1 \
		|| { tail -n 40 build/compile.log; echo "compilation failed: see build/compile.log"; exit 1; }; \
	touch credential/_hotpath__mypyc*.so $(COMPILED)
	@# The build skips what it finds unchanged; the touch on the library says "current for these
	@# sources", which is what the tests check (tests/conftest.py). Without a compiler the stamp
	@# is never made, so the check runs again next time (and compiles once a compiler is there).

compile: $(COMPILED)

run: $(COMPILED)
	$(BIN)/python -m pasaporte.demo

test: $(COMPILED)
	$(BIN)/ruff check .
	$(BIN)/mypy
	PASAPORTE_EXPECT_COMPILED=$$(test -f $(COMPILED) && echo 1) $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(COMPILED)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info
	find . -path ./.venv -prune -o -name '*.so' -print -exec rm -f {} +
