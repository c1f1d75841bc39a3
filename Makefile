# Two commands do all set-up:  `make lab` (open the chapters)  and  `make test` (run every test).
# Both build .venv once and are quick when it is already up to date.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch 2.13.0's CPU wheel, where a machine keeps one on disk, instead of PyPI's CUDA build.
WHEELS := $(wildcard /opt/wheels)
PIP    := $(PY) -m pip install -q $(if $(WHEELS),--find-links $(WHEELS))

.PHONY: lab test bench figures dot clean

lab: $(STAMP) dot
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP) dot
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/cache_ops.py

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[test]'
	$(PIP) --no-deps 'sglang==0.5.12'  # the reference the faithfulness tests import (issue 3)
	touch $(STAMP)

# Graphviz's `dot` renders the tree drawings: Debian's package where we are root, else say how.
dot:
	@command -v dot >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null); } \
	  || { echo "graphviz 'dot' is missing: run 'sudo apt-get install graphviz' (or 'conda install graphviz') and retry"; exit 1; }

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
