# Two commands do all set-up on a fresh machine:  make demo   and   make test
# Both create/update .venv (torch 2.13.0 CPU goes in first, then the project).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.atomflux-installed

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	sh scripts/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/atomflux demo --output demo-output

# pytest exits 5 when it collects no test: make then fails, as it should.
test: $(STAMP)
	$(PY) -m pytest -ra

test-slow: $(STAMP)
	$(PY) -m pytest -ra -m slow

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output build .pytest_cache
