# Two commands set everything up on a machine that has only Python 3:
#   make demo   synthetic data -> Zarr store -> torchrun (2 CPU processes) -> metrics and plots
#   make test   the whole test suite
PYTHON ?= python3
VENV   ?= .venv
# The torch wheel to install. The default resolves to the CPU wheel where one is cached locally and
# to PyPI's build elsewhere; GPU clusters can pick theirs, e.g. TORCH="torch --index-url ...".
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python

.PHONY: demo test test-fast test-stress bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash launch/demo.sh

# two pytest workers (pytest-xdist), each module on one worker so its shared fixtures are built once;
# modules are handed out in tests/conftest.py's order, slowest first
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST)

# the inner loop: every test that does not start processes end to end (tests/conftest.py)
test-fast: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST) -m "not e2e"

# the whole suite while two other processes keep both cores busy: no test may depend on timing
test-stress: $(VENV)/.installed
	@$(PY) -c 'while True: pass' & a=$$!; $(PY) -c 'while True: pass' & b=$$!; \
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST); rc=$$?; kill $$a $$b; exit $$rc

bench: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) demo
